"""Error rates as torchmetrics ``Metric`` objects, so that they are exact under DDP.

The paper reports error, not accuracy; counts are summed across processes before dividing.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ErrorRate(Metric):
    """Fraction of examples whose predicted class (argmax of logits) differs from the label.

    With ``target`` given to :meth:`update`, counts instead how often the prediction misses
    the target (a targeted attack's failure rate is ``ErrorRate`` against targets).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    wrong: Tensor
    total: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("wrong", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, labels: Tensor) -> None:
        predictions = logits.argmax(dim=-1) if logits.ndim > 1 else logits
        self.wrong += (predictions != labels).sum()
        self.total += labels.numel()

    def update_counts(self, wrong: Tensor | int, total: Tensor | int) -> None:
        """Add counts kept elsewhere (e.g. summed over an epoch's steps without updates)."""
        self.wrong += torch.as_tensor(wrong, device=self.wrong.device).long()
        self.total += torch.as_tensor(total, device=self.total.device).long()

    def compute(self) -> Tensor:
        return self.wrong.float() / self.total.clamp(min=1).float()
