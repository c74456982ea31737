"""Distributed set-up without other processes: argument resolution, errors, state keys."""

from __future__ import annotations

import pytest

from revamper import RevamperLoader
from revamper.distributed import DistributedSetup, resolve_setup
from revamper.distributed.agreement import format_ranks, raise_if_any_failed
from revamper.errors import DistributedSetupError
from revamper.loader.state import _DEFAULTED_KEYS
from tests.helpers import IndexDataset


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOCAL_WORLD_SIZE", "LOCAL_RANK", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)


def test_not_distributed_by_default() -> None:
    setup = resolve_setup()
    assert setup == DistributedSetup()
    assert not setup.distributed and setup.group_size == 1 and setup.is_leader


def test_explicit_ranks_and_local_world_size_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    setup = resolve_setup(rank=3, world_size=4)
    assert (setup.rank, setup.world_size, setup.local_world_size) == (3, 4, 2)
    assert (setup.group, setup.leader, setup.is_leader, setup.shares_cache) == (1, 2, False, True)
    assert not setup.communicate  # no process group here
    per_rank = resolve_setup(rank=3, world_size=4, cache_scope="rank")
    assert (per_rank.group_size, per_rank.group, per_rank.is_leader) == (1, 3, True)
    assert "cache group 1 (ranks 2-3)" in setup.describe()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rank": 0}, ValueError, "pass both rank and world_size"),
        ({"world_size": 2}, ValueError, "pass both rank and world_size"),
        ({"rank": 2, "world_size": 2}, ValueError, "rank must be <= 1"),
        ({"rank": 0, "world_size": 0}, ValueError, "world_size must be >= 1"),
        ({"rank": 0, "world_size": 4, "local_world_size": 3}, ValueError, "must divide"),
        ({"rank": 0, "world_size": 2, "local_world_size": 0}, ValueError, "local_world_size"),
        ({"rank": 0.0, "world_size": 2}, TypeError, "rank must be an int"),
        ({"cache_scope": "node"}, ValueError, "cache_scope must be 'machine' or 'rank'"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        resolve_setup(**kwargs)  # type: ignore[arg-type]


def test_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE='two'"):
        resolve_setup(rank=0, world_size=2)


def test_torchrun_without_a_process_group_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.warns(RuntimeWarning, match="not initialised"):
        assert not resolve_setup().distributed


def test_a_machine_wide_cache_without_a_process_group_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs an initialised torch"):
        RevamperLoader(IndexDataset(10), 2, rank=0, world_size=2, local_world_size=2, seed=1)


def test_explicit_ranks_need_a_seed_without_a_process_group() -> None:
    with pytest.raises(ValueError, match="seed is required"):
        RevamperLoader(IndexDataset(10), 2, rank=0, world_size=2)


def test_fewer_samples_than_cache_groups_is_a_clear_error_on_every_rank() -> None:
    for rank in range(4):
        with pytest.raises(ValueError, match="smaller than the number of cache groups"):
            RevamperLoader(IndexDataset(3), 2, rank=rank, world_size=4, seed=0, cache_scope="rank")


def test_explicit_ranks_with_private_caches_need_no_process_group() -> None:
    # Each rank's plan is computed locally: together they cover the data set once.
    seen: list[int] = []
    for rank in range(2):
        with RevamperLoader(
            IndexDataset(10), 3, True, rank=rank, world_size=2, cache_scope="rank", seed=4
        ) as loader:
            assert len(loader) == 2 and loader.plan_config.group_size == 1
            seen += [int(i) for _, target in loader for i in target]
    assert sorted(seen) == list(range(10))


def test_state_carries_the_rank_layout_and_older_states_still_load() -> None:
    with RevamperLoader(IndexDataset(10), 2, rank=1, world_size=2, seed=3, cache_scope="rank") as a:
        state = a.state_dict()
        assert (state["world_size"], state["rank"], state["group_size"]) == (2, 1, 1)
    with RevamperLoader(IndexDataset(10), 2, seed=3) as single:
        with pytest.raises(ValueError, match="world_size=2"):
            single.load_state_dict(state)
        old = {k: v for k, v in single.state_dict().items() if k not in _DEFAULTED_KEYS}
        single.load_state_dict({**old, "epoch": 2})  # a state saved before those keys existed
        assert single.epoch == 2


def test_error_helpers() -> None:
    assert format_ranks([2]) == "rank 2"
    assert format_ranks([3, 1, 2]) == "ranks 1-3"
    assert format_ranks([0, 2, 5]) == "ranks 0, 2, 5"
    raise_if_any_failed([None, None], "to do nothing")
    with pytest.raises(DistributedSetupError, match=r"rank 1 failed to attach: boom$") as info:
        raise_if_any_failed([None, "boom"], "to attach")
    assert info.value.ranks == (1,)
    with pytest.raises(DistributedSetupError, match="ranks 0-1 failed to go: rank 0: a; rank 1: b"):
        raise_if_any_failed(["a", "b"], "to go")
