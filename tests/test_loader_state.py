"""A loader state is input: every field is checked at load, and a refused one changes nothing.

(Issue 11.7: an epoch of 2**80 was accepted and failed only at the next epoch.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from revamper import RevamperLoader
from tests.helpers import IndexDataset, stamp_computation

N, B = 40, 4  # 10 batches per epoch


def make(**kwargs: Any) -> RevamperLoader:
    return RevamperLoader(
        IndexDataset(N),
        batch_size=B,
        shuffle=True,
        partial_transform=stamp_computation,
        **{"seed": 5, **kwargs},
    )


def position(loader: RevamperLoader) -> tuple[dict[str, Any], int, int]:
    return loader.state_dict(), loader.epoch, loader.seed


def without(state: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != key}


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            {"epoch": 2**80},
            ValueError,
            r"state\['epoch'\] must be an int from 0 to 9223372036854775807",
        ),
        ({"epoch": -1}, ValueError, r"state\['epoch'\] must be an int from 0"),
        ({"epoch": 1.0}, TypeError, r"state\['epoch'\] must be an int .* got float"),
        ({"epoch": "3"}, TypeError, r"state\['epoch'\] must be an int"),
        ({"epoch": True}, TypeError, r"state\['epoch'\] must be an int .* got bool"),
        ({"batch": -1}, ValueError, r"state\['batch'\] must be an int >= 0"),
        ({"batch": 11}, ValueError, r"state\['batch'\] must be from 0 to 10"),
        ({"batch": None}, TypeError, r"state\['batch'\] must be an int"),
        ({"seed": 5.0}, TypeError, r"state\['seed'\] must be an int >= 0, got float"),
        ({"seed": "5"}, TypeError, r"state\['seed'\] must be an int"),
        ({"seed": -5}, ValueError, r"state\['seed'\] must be an int >= 0"),
        ({"seed": 6}, ValueError, r"the state has seed=6, this loader has seed=5"),
        ({"num_samples": 0}, ValueError, r"state\['num_samples'\] must be an int >= 1"),
        ({"num_samples": 41}, ValueError, r"num_samples=41"),
        (
            {"reuse_factor": 2**20},
            ValueError,
            r"state\['reuse_factor'\] must be an int from 1 to 65535",
        ),
        ({"batch_size": [4]}, TypeError, r"state\['batch_size'\] must be an int"),
        ({"drop_last": 0}, TypeError, r"state\['drop_last'\] must be a bool, got int"),
        ({"shuffle": "yes"}, TypeError, r"state\['shuffle'\] must be a bool"),
        ({"balance_misses": 1}, TypeError, r"state\['balance_misses'\] must be a bool"),
        ({"world_size": 0}, ValueError, r"state\['world_size'\] must be an int >= 1"),
        ({"rank": 1}, ValueError, r"state\['rank'\] must be an int from 0 to 0"),
        ({"group_size": 2}, ValueError, r"state\['group_size'\] must be an int from 1 to 1"),
        ({"version": 99}, ValueError, r"not a RevamperLoader state \(version 1\)"),
        ({"version": True}, ValueError, r"not a RevamperLoader state"),
        ({"version": 1.0}, ValueError, r"not a RevamperLoader state"),
        ({"version": np.int64(2)}, ValueError, r"not a RevamperLoader state"),
        ({"extra": 1}, ValueError, r"unknown keys 'extra'"),
    ],
)
def test_a_malformed_state_is_refused_naming_the_key_and_changes_nothing(
    change: dict[str, Any], error: type[Exception], match: str
) -> None:
    with make() as loader:
        list(loader)
        next(iter(loader))  # somewhere inside epoch 1
        before = position(loader)
        with pytest.raises(error, match=match):
            loader.load_state_dict({**loader.state_dict(), **change})
        assert position(loader) == before


@pytest.mark.parametrize("key", ["version", "epoch", "batch", "seed", "num_samples", "shuffle"])
def test_a_state_missing_a_key_is_refused(key: str) -> None:
    with make() as loader:
        before = position(loader)
        with pytest.raises(ValueError, match=f"missing keys {key}|version"):
            loader.load_state_dict(without(loader.state_dict(), key))
        assert position(loader) == before


@pytest.mark.parametrize("state", [None, [("epoch", 1)], "state"])
def test_a_state_that_is_no_mapping_is_refused(state: Any) -> None:
    with make() as loader, pytest.raises(TypeError, match="state must be a mapping"):
        loader.load_state_dict(state)


def test_a_refused_seed_leaves_a_seedless_loader_its_own_seed() -> None:
    with make(seed=None) as loader:
        before = position(loader)
        state = {**loader.state_dict(), "seed": 123, "batch": 99}  # adoptable seed, bad batch
        with pytest.raises(ValueError, match="batch"):
            loader.load_state_dict(state)
        assert position(loader) == before


def test_numpy_integers_and_the_largest_epoch_load() -> None:
    with make() as loader:
        state = loader.state_dict()
        loader.load_state_dict(
            {**state, "version": np.int64(1), "epoch": np.int64(3), "batch": np.int32(10)}
        )
        assert loader.state_dict()["epoch"] == 3 and loader.state_dict()["batch"] == 10
        assert type(loader.state_dict()["epoch"]) is int
        loader.load_state_dict({**state, "epoch": 2**63 - 1})
        assert loader.epoch == 2**63 - 1


def test_a_state_survives_torch_save_and_a_weights_only_load(tmp_path: Path) -> None:
    with make() as first:
        list(first)
        torch.save({"loader": first.state_dict()}, tmp_path / "ckpt.pt")
        expected = first.state_dict()
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["loader"]
    with make() as second:
        second.load_state_dict(state)
        assert second.state_dict() == expected
