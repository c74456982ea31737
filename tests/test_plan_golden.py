"""Golden plans: the planner's output, recorded once, must never change by accident.

The plan is a pure function of ``(PlanConfig, epoch)``, and resumed runs, other ranks and
persistent disk caches all rely on it coming out bit for bit the same: a refactor that changes
one draw silently invalidates every cache on disk and desynchronises ranks that run different
versions. So the plans of a grid of configurations (single loader and distributed, N below and
above B, N not divisible by r or B, r = 1 to 4, every flag, several seeds, epochs 0 to 2r + 1)
were recorded in ``tests/data/golden_plans.json`` and every one must come out identical:

- one digest per plan over the index, miss, chunk, batch-bound, generation and write-flag arrays
  (dtypes and shapes included) and the plan's scalars;
- one digest per distributed configuration over the run-wide partition between cache groups;
- a few plans in full, so that a failure can be read and not only detected.

Regenerate only for a deliberate change of the plan (say so in the commit message: it breaks
every existing disk cache): ``.venv/bin/python tests/test_plan_golden.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from revamper.plan import EpochPlan, PlanConfig, entry_generation, plan_epoch, reads_left
from revamper.plan.partition import group_samples

GOLDEN = pathlib.Path(__file__).parent / "data" / "golden_plans.json"

SEEDS = (0, 7, -(2**70) + 3)
"""Seeds: zero, a small one, and one far outside 64 bits (reduced modulo 2**64)."""

FLAGS = (
    # (drop_last, shuffle, balance_misses); balance_misses is ignored without shuffle.
    *((drop, True, balance) for drop in (False, True) for balance in (True, False)),
    *((drop, False, balance) for drop in (False, True) for balance in (True, False)),
)

SINGLE_SIZES = ((1, 4), (3, 4), (5, 5), (7, 3), (16, 4), (37, 8), (100, 7), (257, 32), (64, 1))
"""(N, B) of the single-loader grid: N < B, N == B multiples, N not divisible by r or B, B = 1."""

WORLDS = ((1, 1), (2, 1), (2, 2), (3, 1), (3, 3), (4, 1), (4, 2), (4, 4))
"""(world_size, group_size) of the distributed grid: private caches, shared ones, mixes."""

DISTRIBUTED_SIZES = ((5, 4), (13, 3), (50, 8), (101, 16))
"""(N, B) of the distributed grid (N >= world_size; some ranks get fewer samples than B)."""

FULL = (
    PlanConfig(10, 3, 4, 7),
    PlanConfig(10, 3, 4, 7, drop_last=True),
    PlanConfig(9, 2, 4, 0, shuffle=False, drop_last=True),
    PlanConfig(11, 4, 3, 7, balance_misses=False),
    PlanConfig(13, 3, 3, 7, world_size=4, rank=1, group_size=2),
    PlanConfig(13, 2, 4, 0, drop_last=True, world_size=3, rank=2, group_size=1),
)
"""Configurations whose plans (epochs 0 to 2r + 1) are recorded in full."""


def single_configs() -> Iterator[PlanConfig]:
    """The single-loader grid, in a fixed order."""
    for (n, b), r, (drop, shuffle, balance), seed in itertools.product(
        SINGLE_SIZES, range(1, 5), FLAGS, SEEDS
    ):
        yield PlanConfig(n, r, b, seed, drop_last=drop, shuffle=shuffle, balance_misses=balance)


def distributed_configs() -> Iterator[PlanConfig]:
    """The distributed grid, rank 0 of every world, in a fixed order."""
    for (world, group), (n, b), r, (drop, shuffle, balance), seed in itertools.product(
        WORLDS, DISTRIBUTED_SIZES, range(1, 5), FLAGS, SEEDS[1:]
    ):
        yield PlanConfig(
            n,
            r,
            b,
            seed,
            drop_last=drop,
            shuffle=shuffle,
            balance_misses=balance,
            world_size=world,
            rank=0,
            group_size=group,
        )


def key(config: PlanConfig) -> str:
    """A short, readable name of a configuration (every field but the rank)."""
    name = (
        f"N{config.num_samples} r{config.reuse_factor} B{config.batch_size} s{config.seed} "
        f"{config.drop_last:d}{config.shuffle:d}{config.balance_misses:d}"
    )
    return name if config.world_size == 1 else f"{name} w{config.world_size}/{config.group_size}"


def epochs(config: PlanConfig) -> range:
    """Epochs 0 to 2r + 1: the first cycle, the steady state, and the wrap-around."""
    return range(2 * config.reuse_factor + 2)


def plan_arrays(plan: EpochPlan) -> dict[str, np.ndarray]:
    """Everything a plan determines, as arrays: its own and what its batches hand a worker."""
    arrays: dict[str, np.ndarray] = {
        "indices": plan.indices,
        "planned_miss": plan.planned_miss,
        "batch_bounds": plan.batch_bounds,
        "chunks": plan.chunks,
        "generations": entry_generation(plan.chunks, plan.reuse_factor, plan.epoch),
        "reads_left": reads_left(plan.chunks, plan.reuse_factor, plan.epoch),
        "scalars": np.array(
            [plan.epoch, plan.reuse_factor, plan.num_samples, plan.num_batches, plan.num_misses],
            dtype=np.int64,
        ),
    }
    for name, k in (("first", 0), ("last", plan.num_batches - 1)):
        if plan.num_batches:
            for part, array in zip(plan.batch(k)._fields, plan.batch(k), strict=True):
                arrays[f"{name}.{part}"] = array
    return arrays


def update(h: Any, prefix: str, arrays: dict[str, np.ndarray]) -> None:
    """Feed named arrays into a hash, their dtypes and shapes included."""
    for name, array in arrays.items():
        h.update(f"{prefix}{name}:{array.dtype.str}:{array.shape};".encode())
        h.update(np.ascontiguousarray(array).tobytes())


def run_digest(config: PlanConfig) -> str:
    """A 64-bit digest of every rank's plans over epochs 0 to 2r + 1 (and of the partition)."""
    h = hashlib.blake2b(digest_size=8)
    if config.distributed:
        update(h, "part.", {str(g): part(config, g) for g in range(config.num_groups)})
    for rank in range(config.world_size):
        ranked = dataclasses.replace(config, rank=rank)
        for e in epochs(config):
            update(h, f"{rank}.{e}.", plan_arrays(plan_epoch(ranked, e)))
    return h.hexdigest()


def part(config: PlanConfig, group: int) -> np.ndarray:
    """The samples cache group ``group`` owns for the whole run."""
    return group_samples(config.num_samples, config.num_groups, group, config.seed, config.shuffle)


def full_key(config: PlanConfig) -> str:
    """The name of a configuration recorded in full (the rank included)."""
    return f"{key(config)} rank {config.rank}"


def full_plan(config: PlanConfig) -> list[dict[str, list[int]]]:
    """Every epoch's plan of ``config`` in full, as JSON-ready lists."""
    return [
        {name: array.tolist() for name, array in plan_arrays(plan_epoch(config, e)).items()}
        for e in epochs(config)
    ]


def record() -> dict[str, Any]:
    """Compute today's golden data."""
    return {
        "single": {key(c): run_digest(c) for c in single_configs()},
        "distributed": {key(c): run_digest(c) for c in distributed_configs()},
        "full": {full_key(c): full_plan(c) for c in FULL},
    }


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    with GOLDEN.open(encoding="utf-8") as file:
        data: dict[str, Any] = json.load(file)
    return data


def check(expected: dict[str, str], configs: Iterator[PlanConfig]) -> None:
    """Compare every configuration's digest with the recorded one; name the first failures."""
    names = []
    wrong = []
    for config in configs:
        names.append(key(config))
        if expected.get(names[-1]) != run_digest(config):
            wrong.append(names[-1])
    assert names == list(expected), "the grid changed: regenerate only for a deliberate change"
    assert not wrong, f"{len(wrong)} of {len(names)} configurations changed, e.g. {wrong[:5]}"


def test_single_loader_plans_are_unchanged(golden: dict[str, Any]) -> None:
    check(golden["single"], single_configs())


def test_distributed_plans_are_unchanged(golden: dict[str, Any]) -> None:
    check(golden["distributed"], distributed_configs())


@pytest.mark.parametrize("config", FULL, ids=full_key)
def test_full_plans_are_unchanged(golden: dict[str, Any], config: PlanConfig) -> None:
    assert full_plan(config) == golden["full"][full_key(config)]


def test_golden_data_detects_a_changed_plan(golden: dict[str, Any]) -> None:
    # The digest must see a change of any one field: flip one miss flag of one epoch.
    config = next(single_configs())
    arrays = plan_arrays(plan_epoch(config, 0))
    h1, h2 = hashlib.blake2b(digest_size=8), hashlib.blake2b(digest_size=8)
    update(h1, "", arrays)
    arrays["planned_miss"] = ~arrays["planned_miss"]
    update(h2, "", arrays)
    assert h1.hexdigest() != h2.hexdigest()


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    text = json.dumps(record(), indent=0, separators=(",", ":"))
    GOLDEN.write_text(text + "\n", encoding="utf-8")
