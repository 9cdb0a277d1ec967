"""Error rates as torchmetrics ``Metric`` objects, so that they are exact under DDP.

The paper reports error, not accuracy; counts are summed across processes before dividing.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ErrorRate(Metric):
    """Fraction of examples whose predicted class (argmax of logits) differs from the label.

    Given targets instead of labels it counts how often predictions miss them (a targeted
    attack's failure rate).
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

    def update(
        self,
        logits: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        wrong: Tensor | int | None = None,
        total: Tensor | int | None = None,
    ) -> None:
        """Count the examples whose predicted class (argmax of ``logits``, or ``logits``
        already holding classes) differs from ``labels``; or add counts kept elsewhere
        (``wrong`` of ``total``, e.g. summed over an epoch's steps)."""
        if logits is not None and labels is not None:
            predictions = logits.argmax(dim=-1) if logits.ndim > 1 else logits
            self.wrong += (predictions != labels).sum()
            self.total += labels.numel()
        elif wrong is not None and total is not None:
            self.wrong += torch.as_tensor(wrong, device=self.wrong.device).long()
            self.total += torch.as_tensor(total, device=self.total.device).long()
        else:
            raise ValueError("ErrorRate.update: give logits and labels, or wrong and total")

    def compute(self) -> Tensor:
        return self.wrong.float() / self.total.clamp(min=1).float()
