"""Writing files so that an interrupted write never leaves a truncated or corrupt file behind
(data caches, adversarial sets, run summaries): shared by every package that writes."""

from intriguing.storage.atomic import atomic_output

__all__ = ["atomic_output"]
