"""The examples run as written: quick start, Lightning (1 and 2 processes), Accelerate (2).

Each runs in a subprocess on the CPU over a tiny built-in data set (generated once for the
module), bounded in time. The multi-process ones check that every rank ran, that the ranks of
the machine shared one cache (found without LOCAL_WORLD_SIZE under Lightning), and that the
cache was removed at the end.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
IMAGES = 40
TINY = ["--epochs", "2", "--images", str(IMAGES)]
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT")

pytestmark = pytest.mark.timeout(240)
needs_lightning = pytest.mark.skipif(
    importlib.util.find_spec("lightning") is None,
    reason="lightning is not installed (pip install 'revamper[integrations]')",
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of an example: a private data cache with the tiny set made once."""
    cache = tmp_path_factory.mktemp("revamper-cache")
    env = {**os.environ, "REVAMPER_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    env.update(CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="1", NO_ALBUMENTATIONS_UPDATE="1")
    for name in LAUNCHER_VARIABLES:
        env.pop(name, None)
    code = f"from revamper.datasets.builtin import builtin_data_dir as d; d(num_images={IMAGES})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=180)
    return env


def run(command: list[str], env: dict[str, str], timeout: float) -> str:
    # In a scratch directory: Lightning writes its checkpoints to the working directory.
    scratch = tempfile.mkdtemp(prefix="revamper-example-")
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, cwd=scratch
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def one_shared_cache(output: str, ranks: int) -> None:
    stores = re.findall(r"SharedMemoryStore\('([^']+)'.*?(owner|attached)\)", output)
    assert len(stores) >= ranks, output
    assert len({path for path, _ in stores}) == 1, output  # the ranks share one cache
    assert {role for _, role in stores} == ({"owner", "attached"} if ranks > 1 else {"owner"})
    assert not Path(stores[0][0]).exists(), "the cache was not removed"


def test_quickstart_runs_on_cpu(env: dict[str, str]) -> None:
    output = run([sys.executable, str(EXAMPLES / "quickstart.py"), *TINY], env, timeout=120)
    epochs = re.findall(r"epoch (\d): loss [\d.]+, (\d+) computed, (\d+) cached", output)
    assert [(int(e), int(c) + int(h)) for e, c, h in epochs] == [(0, IMAGES), (1, IMAGES)]
    assert int(epochs[0][2]) == 0 and int(epochs[1][2]) > 0, output  # epoch 1 reuses the cache


def lightning(devices: int, env: dict[str, str]) -> str:
    command = [sys.executable, str(EXAMPLES / "lightning_train.py"), *TINY]
    command += ["--devices", str(devices), "--accelerator", "cpu", "--size", "32"]
    command += ["--batch-size", "8"]
    return run(command, env, timeout=60)


def check_lightning_epochs(output: str, ranks: int) -> None:
    for rank in range(ranks):
        found = re.findall(
            rf"\[rank {rank}\] epoch (\d): loader epoch (\d), (\d+) samples, \d+ computed, "
            r"(\d+) from the cache",
            output,
        )
        assert [(int(e), int(le)) for e, le, _, _ in found] == [(0, 0), (1, 1)], output
        assert {int(n) for _, _, n, _ in found} == {IMAGES // ranks}
        assert int(found[1][3]) > 0, output


@pytest.mark.slow
@needs_lightning
def test_lightning_example_on_one_process(env: dict[str, str]) -> None:
    output = lightning(1, env)
    check_lightning_epochs(output, 1)
    one_shared_cache(output, 1)


@pytest.mark.slow
@needs_lightning
def test_lightning_ddp_shares_one_cache_without_local_world_size(env: dict[str, str]) -> None:
    output = lightning(2, env)
    check_lightning_epochs(output, 2)
    assert "cache group 0 (ranks 0-1)" in output, output
    one_shared_cache(output, 2)


@pytest.mark.slow
def test_accelerate_example_on_two_cpu_processes(env: dict[str, str]) -> None:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate is not installed (pip install 'revamper[integrations]')")
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    command += [str(EXAMPLES / "accelerate_train.py"), *TINY, "--size", "32", "--batch-size", "8"]
    output = run(command, env, timeout=120)
    for rank in (0, 1):
        pattern = rf"\[rank {rank}\] epoch (\d): (\d+) samples, \d+ computed, (\d+)"
        found = re.findall(pattern, output)
        assert [(int(e), int(n)) for e, n, _ in found] == [(0, 20), (1, 20)], output
        assert int(found[1][2]) > 0, output
    assert "cache group 0 (ranks 0-1)" in output, output
    one_shared_cache(output, 2)
