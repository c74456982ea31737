"""Items of every shape DataLoader accepts: dicts (Hugging Face rows), tuples, single inputs.

Issue 12.7: a dict item raised on the first batch even without transforms; DataLoader collates it
into a dict of tensors. ``transform_keys`` names the field(s) a transform applies to.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from revamper import RevamperLoader, SampleError
from revamper.loader.store_setup import cache_fingerprint


class Rows(torch.utils.data.Dataset[dict[str, Any]]):
    """Item i is ``{"image": array([i]), "depth": array([-i]), "label": i, "name": "s<i>"}``."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "image": np.array([index], dtype=np.int64),
            "depth": np.array([-index], dtype=np.int64),
            "label": index,
            "name": f"s{index}",
        }


def stamp(x: np.ndarray) -> np.ndarray:
    """Partial: append an id of this computation (a hit must serve it again)."""
    return np.concatenate([x, np.array([random.getrandbits(62)], dtype=np.int64)])


def times_ten(x: np.ndarray) -> np.ndarray:
    return x * 10


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_dict_items_without_transforms_collate_like_dataloader(num_workers: int) -> None:
    items = [{"x": torch.zeros(2), "y": 0}] * 4
    expected = list(DataLoader(items, batch_size=2))  # type: ignore[arg-type]
    with RevamperLoader(items, batch_size=2, num_workers=num_workers, seed=0) as loader:
        for _ in range(3):  # epoch 0 computes, the later ones read the cache
            got = list(loader)
            assert len(got) == len(expected)
            for batch, want in zip(got, expected, strict=True):
                assert batch.keys() == want.keys()
                assert torch.equal(batch["x"], want["x"]) and torch.equal(batch["y"], want["y"])
        assert loader.stats[2].hits > 0 and loader.stats[2].unplanned_misses == 0


@pytest.mark.parametrize("keys", ["image", ("image",), ["image", "depth"]])
def test_transform_keys_apply_the_transforms_to_the_named_fields_only(keys: Any) -> None:
    named = (keys,) if isinstance(keys, str) else tuple(keys)
    loader = RevamperLoader(
        Rows(12),
        batch_size=4,
        shuffle=True,
        partial_transform=stamp,
        final_transform=times_ten,
        transform_keys=keys,
        reuse_factor=3,
        seed=1,
    )
    seen: dict[tuple[str, int], int] = {}
    with loader:
        for epoch in range(4):
            for batch in loader:
                assert batch["name"] == [f"s{i}" for i in batch["label"].tolist()]
                for field in ("image", "depth"):
                    values = batch[field]
                    sign = 1 if field == "image" else -1
                    if field in named:
                        assert (values[:, 0] == 10 * sign * batch["label"]).all()
                        for label, computed in zip(
                            batch["label"].tolist(), values[:, 1].tolist(), strict=True
                        ):
                            seen.setdefault((field, label), computed)
                    else:
                        assert values.shape == (4, 1)  # untouched, but cached with the rest
                        assert (values[:, 0] == sign * batch["label"]).all()
            assert loader.stats[epoch].unplanned_misses == 0
        assert loader.stats[1].hits > 0


def test_whole_sample_hands_the_whole_dict_to_the_transforms() -> None:
    def swap(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "image": row["depth"], "depth": row["image"]}

    with RevamperLoader(
        Rows(4), batch_size=4, partial_transform=swap, whole_sample=True, seed=0
    ) as loader:
        for _ in range(2):
            batch = next(iter(loader))
            assert (batch["image"][:, 0] == -batch["label"]).all()


class OddOne(Rows):
    """Like :class:`Rows`, but item 3 is ``odd``."""

    def __init__(self, size: int, odd: Any) -> None:
        super().__init__(size)
        self.odd = odd

    def __getitem__(self, index: int) -> Any:
        return self.odd if index == 3 else super().__getitem__(index)


@pytest.mark.parametrize(
    ("odd", "keys", "match"),
    [
        (
            {"depth": np.zeros(1)},
            "image",
            r"sample 3 failed in stage 'partial_transform'.*"
            r"sample 3 has no key 'image' named by transform_keys=\('image',\); "
            r"its keys: \['depth'\]",
        ),
        ((np.zeros(1), 3), "image", r"sample 3 .*: sample 3 is a tuple, not a mapping"),
    ],
)
def test_an_item_that_does_not_fit_transform_keys_is_named(odd: Any, keys: Any, match: str) -> None:
    loader = RevamperLoader(
        OddOne(6, odd), batch_size=2, partial_transform=stamp, transform_keys=keys, seed=0
    )
    with loader, pytest.raises(SampleError, match=match) as info:
        list(loader)
    assert info.value.index == 3


def test_a_dict_item_with_a_transform_needs_transform_keys_or_whole_sample() -> None:
    loader = RevamperLoader(Rows(4), batch_size=2, final_transform=times_ten, seed=0)
    with loader, pytest.raises(SampleError, match=r"transform_keys.*whole_sample=True"):
        list(loader)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"transform_keys": 3}, TypeError, "transform_keys must be a str or a sequence"),
        ({"transform_keys": []}, TypeError, "non-empty"),
        ({"transform_keys": ["image", 1]}, TypeError, "sequence of str"),
        ({"transform_keys": ("a", "a")}, ValueError, "twice"),
        ({"transform_keys": "image", "whole_sample": True}, ValueError, "not both"),
    ],
)
def test_bad_transform_keys_are_refused(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        RevamperLoader(Rows(4), seed=0, **kwargs)


def test_transform_keys_are_part_of_a_disk_caches_identity() -> None:
    common: dict[str, Any] = {
        "num_samples": 4,
        "reuse_factor": 3,
        "seed": 0,
        "partial_transform": stamp,
        "whole_sample": False,
        "cache_key": None,
    }
    assert cache_fingerprint(**common) != cache_fingerprint(**common, transform_keys=("image",))
    assert cache_fingerprint(**common, transform_keys=("image",)) != cache_fingerprint(
        **common, transform_keys=("depth",)
    )


class BatchedRows:
    """A data set read only through ``__getitems__`` (as torch's fetcher reads one when it has
    one): item i is ``(array([i]), i)``. Records every call's indices."""

    def __init__(self, size: int, *, fail_at: int | None = None, short: bool = False) -> None:
        self.size, self.fail_at, self.short = size, fail_at, short
        self.calls: list[list[int]] = []

    def __len__(self) -> int:
        return self.size

    def __getitems__(self, indices: list[int]) -> list[tuple[np.ndarray, int]]:
        self.calls.append(list(indices))
        if self.fail_at in indices:
            raise KeyError(f"row {self.fail_at} is missing")
        rows = [(np.array([i], dtype=np.int64), i) for i in indices]
        return rows[:-1] if self.short else rows


class BatchedAndSingleRows(BatchedRows):
    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if index == self.fail_at:
            raise KeyError(f"row {index} is missing")
        return np.array([index], dtype=np.int64), index


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_a_dataset_with_only_getitems_is_read_like_dataloader_reads_it(num_workers: int) -> None:
    data = BatchedRows(24)
    expected = list(DataLoader(data, batch_size=4))  # type: ignore[arg-type]
    with RevamperLoader(
        data, batch_size=4, num_workers=num_workers, partial_transform=times_ten, seed=0
    ) as loader:
        for _ in range(3):
            got = list(loader)
            assert len(got) == len(expected)
            for (x, y), (want_x, want_y) in zip(got, expected, strict=True):
                assert torch.equal(x, want_x * 10) and torch.equal(y, want_y)
        assert loader.stats[2].hits > 0 and loader.stats[2].unplanned_misses == 0


def test_getitems_gets_one_call_for_a_batchs_misses_only() -> None:
    data = BatchedAndSingleRows(24)
    with RevamperLoader(data, batch_size=4, reuse_factor=3, seed=0, shuffle=True) as loader:
        list(loader)
        assert sorted(len(call) for call in data.calls) == [4] * 6  # epoch 0: all misses
        data.calls.clear()
        list(loader)
        assert sum(len(call) for call in data.calls) == loader.stats[1].planned_misses
        assert all(0 < len(call) <= 4 for call in data.calls)


@pytest.mark.parametrize(
    ("data", "match", "index"),
    [
        (BatchedAndSingleRows(8, fail_at=5), r"sample 5 failed in stage 'load'.*row 5", 5),
        (BatchedRows(8, fail_at=5), r"samples 4, 5, 6, 7 failed in stage 'load'.*row 5", None),
        (BatchedRows(8, short=True), r"'load'.*returned list of length 3", None),
    ],
    ids=["named-by-getitem", "getitems-only", "wrong-length"],
)
def test_a_failing_getitems_names_the_samples(data: Any, match: str, index: int | None) -> None:
    with (
        RevamperLoader(data, batch_size=4, seed=0) as loader,
        pytest.raises(SampleError, match=match) as info,
    ):
        list(loader)
    assert info.value.stage == "load" and info.value.index == index


class BatchShaped(torch.utils.data.Dataset[torch.Tensor]):
    """``__getitems__`` returns the whole batch as one tensor (``self.x[idx]``), as fast data
    sets do; DataLoader takes its rows."""

    def __init__(self, size: int) -> None:
        self.x = torch.arange(size * 2).reshape(size, 2)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.x[index]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self.x[indices]


def test_a_batch_shaped_getitems_result_gives_its_rows() -> None:
    """Each row is one sample (cached and transformed on its own), collated as usual: the
    batches DataLoader gives with a pass-through collate_fn."""
    data = BatchShaped(12)
    expected = list(DataLoader(data, batch_size=4, collate_fn=lambda batch: batch))
    with RevamperLoader(data, batch_size=4, reuse_factor=2, seed=0) as loader:
        for _ in range(3):
            got = list(loader)
            assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


class OnlyBatchedDataset(torch.utils.data.Dataset[Any]):
    """A Dataset subclass with only __getitems__: its __getitem__ is Dataset's abstract one."""

    def __len__(self) -> int:
        return 8

    def __getitems__(self, indices: list[int]) -> list[Any]:
        if 5 in indices:
            raise OSError("the shard holding row 5 is unreadable")
        return [np.array([i]) for i in indices]


def test_the_batch_error_of_a_getitems_only_dataset_subclass_is_the_one_reported() -> None:
    with (
        RevamperLoader(OnlyBatchedDataset(), batch_size=4, seed=0) as loader,
        pytest.raises(
            SampleError, match=r"samples 4, 5, 6, 7 failed in stage 'load'.*OSError.*row 5"
        ) as info,
    ):
        list(loader)
    assert info.value.index is None


def test_items_of_a_dataset_without_getitems_are_loaded_one_at_a_time() -> None:
    """The load -> partial -> put order per sample keeps one raw item alive at a time."""
    alive: list[int] = []
    peak = [0]

    class Big(torch.utils.data.Dataset[np.ndarray]):
        def __len__(self) -> int:
            return 16

        def __getitem__(self, index: int) -> np.ndarray:
            alive.append(index)
            peak[0] = max(peak[0], len(alive))
            return np.full(4, index)

    def crop(x: np.ndarray) -> np.ndarray:
        alive.pop()
        return x[:1]

    with RevamperLoader(Big(), batch_size=8, partial_transform=crop, seed=0) as loader:
        list(loader)
    assert peak[0] == 1


def test_from_pipeline_profiles_a_getitems_only_dataset() -> None:
    class OnlyBatched:
        def __len__(self) -> int:
            return 64

        def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
            return [torch.full((3, 8, 8), float(i)) for i in indices]

    with RevamperLoader.from_pipeline(
        OnlyBatched(), [lambda x: x + 1, lambda x: x * 2], batch_size=8, seed=0
    ) as loader:
        assert sum(len(batch) for batch in loader) == 64


class Columns(torch.utils.data.Dataset[Any]):
    """``__getitems__`` returns the batch as columns: ``(images, labels)``."""

    def __len__(self) -> int:
        return 8

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.arange(8 * 4).reshape(8, 4)[indices], torch.tensor(indices)


def test_a_batch_returned_as_columns_is_refused_not_read_as_two_samples() -> None:
    """With two misses in a batch, the two columns used to pass for two samples."""
    with (
        RevamperLoader(Columns(), batch_size=2, seed=0) as loader,
        pytest.raises(SampleError, match="must return a list with one item per index"),
    ):
        list(loader)


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_a_failing_getitems_of_one_sample_names_it_across_workers(num_workers: int) -> None:
    data = BatchedRows(8, fail_at=5)
    loader = RevamperLoader(data, batch_size=1, num_workers=num_workers, seed=0)
    with loader, pytest.raises(SampleError, match=r"sample 5 failed in stage 'load'") as info:
        list(loader)
    assert info.value.index == 5 and info.value.stage == "load"


def test_a_getitems_result_of_the_wrong_form_is_not_read_again_item_by_item() -> None:
    singles: list[int] = []

    class WrongForm(BatchedAndSingleRows):
        def __getitems__(self, indices: list[int]) -> dict[str, list[int]]:
            return {"index": indices}

        def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
            singles.append(index)
            return super().__getitem__(index)

    with (
        RevamperLoader(WrongForm(8), batch_size=4, seed=0) as loader,
        pytest.raises(
            SampleError, match=r"samples 0, 1, 2, 3 failed in stage 'load'.*returned dict"
        ),
    ):
        list(loader)
    assert singles == []  # the form is wrong, not a sample: nothing read item by item
