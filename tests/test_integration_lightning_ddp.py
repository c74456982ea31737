"""RevamperLoader under Lightning's DDP strategy: 2 CPU processes, one cache, exact resume.

Runs ``tests/lightning_ddp_script.py`` (Lightning's launcher starts rank 1 by running it again):
once uninterrupted, saving a checkpoint after every step and every epoch, then resumed from a
mid-epoch and an end-of-epoch checkpoint. Lightning sets no LOCAL_WORLD_SIZE, so the one cache
for both ranks comes from the loader's own discovery; Lightning saves only rank 0's loader
state, so rank 1 resumes exactly only thanks to RevamperCallback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning.pytorch")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCRIPT = Path(__file__).resolve().parent / "lightning_ddp_script.py"
SIZE, BATCHES = 36, 5  # as in the script: 18 samples per rank, batches of 4


def launch(out: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, str(SCRIPT), str(out), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr


def report(out: Path, run: str, rank: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / f"{run}-rank{rank}.json").read_text())
    data["seen"] = [(epoch, indices) for epoch, indices in data["seen"]]
    return data


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    out = tmp_path_factory.mktemp("lightning-ddp")
    launch(out)
    return out, [report(out, "full", rank) for rank in (0, 1)]


def test_two_ddp_ranks_share_one_cache_and_split_every_epoch(
    uninterrupted: tuple[Path, list[Any]],
) -> None:
    _, (rank0, rank1) = uninterrupted
    assert rank0["store"] == rank1["store"] and rank0["store"].startswith("/dev/shm/")
    assert not Path(rank0["store"]).exists()  # removed by rank 0's close
    for epoch in range(3):
        shares = [
            [i for e, batch in r["seen"] if e == epoch for i in batch] for r in (rank0, rank1)
        ]
        assert sorted(shares[0] + shares[1]) == list(range(SIZE))  # disjoint, complete


@pytest.mark.parametrize(
    "checkpoint",
    ["steps/step=7.ckpt", "epochs/epoch=0.ckpt"],  # epoch 1 batch 2; the end of epoch 0
)
def test_resume_is_exact_on_every_rank(
    uninterrupted: tuple[Path, list[Any]], checkpoint: str
) -> None:
    out, full = uninterrupted
    launch(out, "--resume", str(out / checkpoint))
    done = 7 if checkpoint.startswith("steps") else BATCHES
    for rank in (0, 1):
        resumed = report(out, Path(checkpoint).stem, rank)
        assert resumed["seen"] == full[rank]["seen"][done:], f"rank {rank}"
