"""Placeholder; filled in by its issue."""

from callbacks.spectral import SpectralMonitor as SpectralMonitor
