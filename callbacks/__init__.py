"""Lightning callbacks: thin glue over attacks/ and analysis/ (backfeed, transfer, spectral)."""

from intriguing.callbacks.backfeed import AdversarialBackfeed as AdversarialBackfeed
from intriguing.callbacks.pool import AdversarialPool as AdversarialPool
from intriguing.callbacks.pool_examples import PoolExamplesLogger as PoolExamplesLogger
from intriguing.callbacks.spectral import SpectralMonitor as SpectralMonitor
from intriguing.callbacks.transfer import TransferRobustness as TransferRobustness
from intriguing.callbacks.transfer import transfer_callbacks as transfer_callbacks
