"""Ranks per machine learnt from the process group (no LOCAL_WORLD_SIZE): one cache per machine.

Lightning's DDP launchers, SLURM's srun and mpirun do not set torchrun's LOCAL_WORLD_SIZE; the
loader must still find which ranks share a machine. Real gloo worlds (see
``tests/test_distributed_loader.py``, whose rank processes start without torchrun's variables);
"other machines" are simulated by giving ranks different host identities.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest

import revamper.distributed.setup as distributed_setup
from revamper import RevamperLoader
from revamper.distributed.machines import host_identity, machine_layout
from tests.helpers import IndexDataset
from tests.test_distributed_loader import (
    RankReport,
    assert_released,
    check_epochs,
    run_world,
    train,
    values,
)


def test_layout_of_contiguous_equal_machines() -> None:
    layout = machine_layout(["a", "a", "b", "b"])
    assert (layout.machines, layout.ranks_per_machine, layout.sizes) == (2, 2, (2, 2))
    assert machine_layout(["a"] * 3).ranks_per_machine == 3
    assert machine_layout(["a", "b", "c"]).ranks_per_machine == 1


@pytest.mark.parametrize("identities", [["a", "b", "a", "b"], ["a", "a", "b"], ["a", "b", "b"]])
def test_layout_that_cannot_share_per_machine(identities: list[str]) -> None:
    layout = machine_layout(identities)
    assert layout.ranks_per_machine is None
    assert "machines of" in layout.describe()


def test_host_identity_names_this_host_and_is_stable() -> None:
    identity = host_identity()
    assert identity == host_identity()
    assert identity.startswith(os.uname().nodename + "|")


def _train_as_host(rank: int, world: int, hosts: list[str], kwargs: dict[str, Any]) -> Any:
    """``train`` with this rank's host identity replaced by ``hosts[rank]``; warnings caught."""
    distributed_setup.host_identity = lambda: hosts[rank]  # type: ignore[assignment]
    env = kwargs.pop("env", None)
    if env is not None:
        os.environ["LOCAL_WORLD_SIZE"] = env[rank]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = train(rank, world, 2, kwargs)
    return report, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


BASE = {"size": 40, "batch_size": 4, "reuse_factor": 2, "seed": 3, "num_workers": 0}


@pytest.mark.slow
def test_two_ranks_without_local_world_size_share_one_cache(tmp_path: Path) -> None:
    # Real host identities, no LOCAL_WORLD_SIZE, no local_world_size argument: Lightning's set-up.
    kwargs = {**BASE, "num_workers": 1}
    reports: list[RankReport] = values(run_world(train, 2, tmp_path, 3, kwargs))
    leader, member = reports
    assert leader.config.group_size == 2
    assert leader.store_path == member.store_path and leader.is_owner and not member.is_owner
    made = [n for n in leader.shm_dirs for r in reports if n.startswith(f"revamper-{r.pid}-")]
    assert made == [Path(leader.store_path).name]  # the machine's only cache
    assert check_epochs(reports, 40, 2) > 0  # some hits on entries the other rank computed
    assert_released(reports)


@pytest.mark.slow
def test_two_machines_of_two_ranks_found_by_host_identity(tmp_path: Path) -> None:
    hosts = ["m0", "m0", "m1", "m1"]
    outcomes = values(run_world(_train_as_host, 4, tmp_path, hosts, dict(BASE)))
    reports = [report for report, _ in outcomes]
    paths = [report.store_path for report in reports]
    assert paths[0] == paths[1] != paths[2] == paths[3]
    assert [report.is_owner for report in reports] == [True, False, True, False]
    assert {report.config.group_size for report in reports} == {2}
    assert check_epochs(reports, 40, 2) > 0
    assert all(not caught for _, caught in outcomes)
    assert_released(reports)


@pytest.mark.slow
def test_ranks_interleaved_over_machines_get_private_caches_with_a_warning(
    tmp_path: Path,
) -> None:
    hosts = ["m0", "m1", "m0", "m1"]  # srun --distribution=cyclic numbers ranks like this
    outcomes = values(run_world(_train_as_host, 4, tmp_path, hosts, dict(BASE)))
    reports = [report for report, _ in outcomes]
    assert len({report.store_path for report in reports}) == 4
    assert {report.config.group_size for report in reports} == {1}
    assert check_epochs(reports, 40, 2) == 0
    assert all(any("private cache" in m for m in caught) for _, caught in outcomes)
    assert_released(reports)


@pytest.mark.slow
def test_local_world_size_overrides_what_the_ranks_find(tmp_path: Path) -> None:
    # The argument wins silently; the environment variable wins, with a warning if it differs.
    kwargs = {**BASE, "local_world_size": 1}
    outcomes = values(run_world(_train_as_host, 2, tmp_path, ["m0", "m0"], kwargs))
    assert outcomes[0][0].store_path != outcomes[1][0].store_path
    assert all(not caught for _, caught in outcomes)
    kwargs = {**BASE, "env": ["1", "1"]}
    outcomes = values(run_world(_train_as_host, 2, tmp_path, ["m0", "m0"], kwargs))
    assert outcomes[0][0].store_path != outcomes[1][0].store_path
    assert all(any("LOCAL_WORLD_SIZE=1" in m for m in caught) for _, caught in outcomes)


def _build_with_env(rank: int, world: int, env: list[str]) -> str:
    os.environ["LOCAL_WORLD_SIZE"] = env[rank]
    with RevamperLoader(IndexDataset(8), batch_size=2, seed=0) as loader:
        return repr(loader.distributed)


@pytest.mark.slow
def test_a_malformed_local_world_size_on_one_rank_fails_every_rank(tmp_path: Path) -> None:
    outcomes = run_world(_build_with_env, 2, tmp_path, ["2", "two"])
    assert outcomes[1].error_type == "ValueError" and "'two'" in str(outcomes[1].error)
    assert outcomes[0].error_type == "DistributedSetupError"
    assert "rank 1" in str(outcomes[0].error)
