"""Lightning callbacks: thin glue over attacks/ and analysis/ (backfeed, transfer, spectral),
each registered with its typed config (:mod:`callbacks.registry`, where a user registers
their own).

The names below are imported when first used (PEP 562), so that importing
:mod:`callbacks.registry` (the config schema, the command line) imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from intriguing.registry import lazy_exports

if TYPE_CHECKING:
    from intriguing.callbacks.backfeed import AdversarialBackfeed
    from intriguing.callbacks.pool import AdversarialPool
    from intriguing.callbacks.pool_examples import PoolExamplesLogger
    from intriguing.callbacks.registry import callback_entry, register_callback
    from intriguing.callbacks.spectral import SpectralMonitor
    from intriguing.callbacks.transfer import TransferRobustness, transfer_callbacks

#: Where each public name is defined.
_MODULES = {
    "backfeed": ("AdversarialBackfeed",),
    "pool": ("AdversarialPool",),
    "pool_examples": ("PoolExamplesLogger",),
    "registry": ("callback_entry", "register_callback"),
    "spectral": ("SpectralMonitor",),
    "transfer": ("TransferRobustness", "transfer_callbacks"),
}

__all__ = [
    "AdversarialBackfeed",
    "AdversarialPool",
    "PoolExamplesLogger",
    "SpectralMonitor",
    "TransferRobustness",
    "callback_entry",
    "register_callback",
    "transfer_callbacks",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULES, __all__)
