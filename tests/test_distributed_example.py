"""examples/ddp_train.py under torchrun: two real ranks, one machine-wide cache, no leak."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_the_ddp_example_trains_on_two_ranks_with_one_cache(tmp_path: Path) -> None:
    env = {**os.environ, "REVAMPER_CACHE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(ROOT / "examples" / "ddp_train.py")]
    command += ["--epochs", "2", "--images", "40", "--size", "32", "--batch-size", "8"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for rank in (0, 1):
        assert f"[rank {rank}] 3 batches per epoch on every rank" in output
        epoch_1 = re.search(rf"\[rank {rank}\] epoch 1: .* (\d+) from the cache", output)
        assert epoch_1 is not None and int(epoch_1[1]) > 0, output
    stores = set(re.findall(r"SharedMemoryStore\('([^']+)'", output))
    assert len(stores) == 1, output  # one cache for the machine's two ranks
    assert not Path(stores.pop()).exists()  # removed when rank 0 closed its loader
