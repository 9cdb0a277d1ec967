"""Lightning callbacks: thin glue over attacks/ and analysis/ (backfeed, transfer, spectral)."""

from callbacks.backfeed import AdversarialBackfeed as AdversarialBackfeed
from callbacks.pool import AdversarialPool as AdversarialPool
from callbacks.spectral import SpectralMonitor as SpectralMonitor
from callbacks.transfer import TransferRobustness as TransferRobustness
from callbacks.transfer import transfer_callbacks as transfer_callbacks
