"""Two DDP processes (gloo, CPU): disjoint training shards, reshuffled, each test image once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from intriguing.datamodules import build_datamodule

WORKER = Path(__file__).with_name("ddp_worker.py")
PROBE = torch.randn(784, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.ddp
def test_ddp_ranks_get_disjoint_shards(real_mnist_dir: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(WORKER), str(real_mnist_dir), str(tmp_path)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [int(rank["world_size"]) for rank in ranks] == [2, 2]
    module = build_datamodule(
        {"data_dir": str(real_mnist_dir), "val_size": 0, "train_subset": 600, "test_subset": 250}
    )
    expected = (module.tensors("train")[0].flatten(1).double() @ PROBE).sort().values
    for epoch in range(2):
        shards = [rank[f"train{epoch}"] for rank in ranks]
        assert len(shards[0]) == len(shards[1]) == 300
        assert torch.allclose(
            torch.cat(shards).sort().values, expected, rtol=0, atol=1e-9
        )  # disjoint, complete
    assert not torch.equal(ranks[0]["train0"], ranks[0]["train1"])  # reshuffled by epoch
    test_keys = module.tensors("test")[0].flatten(1).double() @ PROBE
    served = torch.cat([ranks[0]["test"], ranks[1]["test"]])
    assert torch.allclose(served, test_keys, rtol=0, atol=1e-9)  # in order, none twice
