"""Run by test_ddp.py as a script: two DDP processes record which examples each rank saw.

Usage: python ddp_worker.py DATA_DIR OUT_DIR (Lightning's "ddp" strategy re-runs this script
for rank 1, which is why it is a file and not a function of the test).
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from intriguing.datamodules import build_datamodule

PROBE = torch.randn(784, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


class ShardRecorder(pl.LightningModule):
    """Trains a linear model; saves a key (a random projection) of every image each rank saw."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out
        self.layer = torch.nn.Linear(784, 10)
        self.seen: dict[str, list[torch.Tensor]] = {}

    def _record(self, stage: str, batch) -> torch.Tensor:
        x, y = batch
        self.seen.setdefault(stage, []).append(x.flatten(1).double() @ PROBE)
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._record(f"train{self.current_epoch}", batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._record("test", batch)

    def on_test_end(self) -> None:
        seen = {stage: torch.cat(keys) for stage, keys in self.seen.items()}
        seen["world_size"] = torch.tensor(self.trainer.world_size)
        torch.save(seen, self.out / f"rank{self.global_rank}.pt")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main(data_dir: str, out: str) -> None:
    module = build_datamodule(
        {"data_dir": data_dir, "val_size": 0, "train_subset": 600, "batch_size": 50,
         "eval_batch_size": 100, "test_subset": 250}
    )  # fmt: skip
    trainer = pl.Trainer(
        default_root_dir=out,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = ShardRecorder(Path(out))
    trainer.fit(model, datamodule=module)
    trainer.test(model, datamodule=module, verbose=False)
    # Lightning leaves the process group up; gloo threads alive at exit can abort the process.
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
