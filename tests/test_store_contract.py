"""The one contract every cache store keeps, run over every store kind."""

from __future__ import annotations

import multiprocessing as mp
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from revamper.store import MISS, CacheStore, store_kinds, store_spec
from revamper.store.codec import encode
from revamper.store.record import record_size
from tests.conftest import StoreFactory


def image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))


def test_put_then_get_returns_equal_value(new_store: StoreFactory) -> None:
    store = new_store()
    value = (image(1), 7, {"t": torch.arange(5)})
    assert store.put(3, 0, value)
    back = store.get(3, 0)
    assert back[0].tobytes() == value[0].tobytes() and back[1] == 7
    assert torch.equal(back[2]["t"], torch.arange(5))


def test_get_absent_index_is_miss(new_store: StoreFactory) -> None:
    store = new_store()
    assert store.get(0, 0) is MISS
    assert not MISS


def test_generation_mismatch_is_miss(new_store: StoreFactory) -> None:
    store = new_store()
    store.put(1, 4, np.ones(3))
    assert store.get(1, 3) is MISS
    assert store.get(1, 5) is MISS
    assert store.contains(1) and store.contains(1, 4) and not store.contains(1, 5)


def test_put_replaces_previous_entry(new_store: StoreFactory) -> None:
    store = new_store()
    store.put(2, 0, np.zeros(100))
    store.put(2, 3, np.ones(10))
    np.testing.assert_array_equal(store.get(2, 3), np.ones(10))
    assert store.get(2, 0) is MISS
    stats = store.stats()
    assert stats.entries == 1
    assert stats.bytes_used == record_size(encode(np.ones(10)))


def test_variable_size_entries(new_store: StoreFactory) -> None:
    store = new_store()
    for index, size in enumerate([0, 1, 63, 64, 65, 4096, 300_001]):
        store.put(index, 0, np.full(size, index, dtype=np.uint8))
    for index, size in enumerate([0, 1, 63, 64, 65, 4096, 300_001]):
        back = store.get(index, 0)
        assert back.shape == (size,) and (back == index).all()


def test_mutating_a_hit_does_not_change_the_cache(new_store: StoreFactory) -> None:
    store = new_store()
    store.put(0, 0, (np.arange(4), torch.arange(4)))
    array, tensor = store.get(0, 0)
    array += 100
    tensor.mul_(-1)
    again_array, again_tensor = store.get(0, 0)
    np.testing.assert_array_equal(again_array, np.arange(4))
    assert torch.equal(again_tensor, torch.arange(4))


def test_evict(new_store: StoreFactory) -> None:
    store = new_store()
    store.put(5, 0, np.ones(8))
    store.evict(5)
    store.evict(5)  # absent: harmless
    assert store.get(5, 0) is MISS
    assert not store.contains(5)
    assert store.stats().entries == 0 and store.stats().bytes_used == 0


def test_stats_count_puts_and_bytes(new_store: StoreFactory) -> None:
    store = new_store()
    sizes = [record_size(encode(np.zeros(n))) for n in (1, 10, 100)]
    for index, n in enumerate((1, 10, 100)):
        store.put(index, 0, np.zeros(n))
    stats = store.stats()
    assert stats.entries == 3 and stats.puts == 3
    assert stats.bytes_used == sum(sizes)
    assert stats.budget_bytes is None


def test_budget_rejects_what_does_not_fit(new_store: StoreFactory) -> None:
    one = record_size(encode(np.zeros(1000, dtype=np.uint8)))
    store = new_store(budget_bytes=2 * one + 10)
    assert store.put(0, 0, np.zeros(1000, dtype=np.uint8))
    assert store.put(1, 0, np.zeros(1000, dtype=np.uint8))
    assert not store.put(2, 0, np.zeros(1000, dtype=np.uint8))
    assert store.get(2, 0) is MISS
    # replacing an entry reuses its own bytes
    assert store.put(1, 1, np.ones(1000, dtype=np.uint8))
    stats = store.stats()
    assert stats.bytes_used <= stats.budget_bytes == 2 * one + 10
    assert stats.rejected_puts == 1 and stats.entries == 2


def test_rejected_replacement_drops_the_outdated_entry(new_store: StoreFactory) -> None:
    small = record_size(encode(np.zeros(10, dtype=np.uint8)))
    store = new_store(budget_bytes=2 * small)
    assert store.put(0, 0, np.zeros(10, dtype=np.uint8))
    assert not store.put(0, 1, np.zeros(5000, dtype=np.uint8))
    assert not store.contains(0)
    assert store.stats().bytes_used == 0


def test_zero_budget_caches_nothing(new_store: StoreFactory) -> None:
    store = new_store(budget_bytes=0)
    assert not store.put(0, 0, 1)
    assert store.get(0, 0) is MISS


def test_negative_index_is_rejected(new_store: StoreFactory) -> None:
    store = new_store()
    with pytest.raises(ValueError, match="index"):
        store.put(-1, 0, 1)


def test_get_many_matches_get(new_store: StoreFactory) -> None:
    store = new_store()
    for index in range(5):
        store.put(index, index % 2, np.array([index]))
    got = store.get_many([0, 1, 2, 3, 4, 9], [0, 1, 1, 1, 0, 0])
    assert [g if g is MISS else int(g[0]) for g in got] == [0, 1, MISS, 3, 4, MISS]
    with pytest.raises(ValueError, match="generations"):
        store.get_many([1, 2], [0])


def test_closed_store_refuses_use(new_store: StoreFactory) -> None:
    store = new_store()
    store.put(0, 0, 1)
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        store.get(0, 0)
    with pytest.raises(RuntimeError, match="closed"):
        store.put(0, 0, 1)


def test_closed_store_refuses_every_method(new_store: StoreFactory) -> None:
    store = new_store()
    store.close()
    calls = [
        lambda: store.get_many([0], [0]),
        lambda: store.evict(0),
        lambda: store.contains(0),
        store.stats,
        lambda: store.prefetch([0], [0]),
        lambda: store.on_epoch_start(1),
        store.handle,
        store.ram_bytes,
        lambda: pickle.dumps(store),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match="closed"):
            call()


def test_indices_and_generations_must_be_integers(new_store: StoreFactory) -> None:
    store = new_store()
    assert store.put(np.int64(4), np.int64(2), "numpy integers are integers")
    assert store.get(4, 2) == "numpy integers are integers"
    with pytest.raises(TypeError, match="index"):
        store.get(4.0, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generation"):
        store.put(4, 2.0, 1)  # type: ignore[arg-type]


def test_the_store_describes_itself_to_the_registry(new_store: StoreFactory) -> None:
    store = new_store()
    assert store.kind in store_kinds()
    assert store.persistent is store_spec(store.kind).persistent
    assert all(isinstance(value, str) for value in store.handle().values())
    with store as entered:
        assert entered is store
    assert store.closed


def test_pickled_store_is_attached_and_shares_entries(new_store: StoreFactory) -> None:
    store = new_store()
    store.put(0, 0, "from owner")
    attached: CacheStore = pickle.loads(pickle.dumps(store))
    assert attached.get(0, 0) == "from owner"
    attached.put(1, 0, "from attached")
    attached.close()  # an attached instance never releases the shared entries
    assert store.get(1, 0) == "from attached"


def run_children(method: str, target: Any, arguments: list[tuple[Any, ...]]) -> None:
    """Run ``target(*args)`` in one process per ``args``, all at once; each must succeed."""
    ctx = mp.get_context(method)
    procs = [ctx.Process(target=target, args=args) for args in arguments]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def _child_puts(store: CacheStore, start: int) -> None:
    for index in range(start, start + 20):
        assert store.put(index, 1, np.full(500, index))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_concurrent_writers_in_other_processes(new_store: StoreFactory, method: str) -> None:
    store = new_store()
    run_children(method, _child_puts, [(store, start) for start in (0, 20, 40)])
    for index in range(60):
        np.testing.assert_array_equal(store.get(index, 1), np.full(500, index))
    stats = store.stats()
    assert stats.entries == 60 and stats.puts == 60
    assert stats.bytes_used == 60 * record_size(encode(np.full(500, 0)))


def _child_puts_same(store: CacheStore, fill: int) -> None:
    for index in range(30):
        assert store.put(index, 1, np.full(500, fill))


@pytest.mark.slow
def test_concurrent_writers_of_the_same_entries(new_store: StoreFactory) -> None:
    # Distributed padding can make two ranks write the same index and generation at once.
    store = new_store()
    run_children("fork", _child_puts_same, [(store, fill) for fill in (7, 8, 9)])
    for index in range(30):
        value = store.get(index, 1)
        assert value is not MISS and len(set(value.tolist())) == 1 and value[0] in (7, 8, 9)
    stats = store.stats()
    assert stats.entries == 30
    assert stats.bytes_used == 30 * record_size(encode(np.full(500, 0)))


def test_values_of_every_supported_kind(new_store: StoreFactory) -> None:
    store = new_store()
    values: list[Any] = [
        image(3),
        image(4).convert("L"),
        np.zeros((2, 3), dtype=np.float16),
        torch.zeros(3, dtype=torch.bfloat16),
        (image(5), 1),
        {"a": [1, 2], "b": None},
        b"bytes",
    ]
    for index, value in enumerate(values):
        store.put(index, 0, value)
    for index, value in enumerate(values):
        back = store.get(index, 0)
        assert type(back) is type(value) or isinstance(back, Image.Image)
