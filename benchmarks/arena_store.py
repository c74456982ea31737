"""The arena store against today's shared-memory store: put, get, bytes per entry, epoch 0.

    .venv/bin/python benchmarks/arena_store.py [--rounds 3] [--quick]

For each entry size (784 bytes: an MNIST image; 150 KB: a 224x224 RGB image) and entry count,
every round creates each store afresh, in alternating order (old, new; then new, old), and
times in one process, per entry:

- ``put e0``: epoch 0, every entry new (fresh tmpfs pages: the memory store creates files, the
  arena allocates its data region chunk by chunk);
- ``put e1``: a newer generation over every entry (the steady state: files renamed over, or
  the arena's slots rewritten in place);
- ``get``: one ``get`` per entry, in a random order;
- ``get_many``: batches of 64 (what the loader calls), in a random order;
- ``bytes/entry``: what the tmpfs holds for the store divided by the entries (the arena's
  slot table included).

The arena is also run with ``preallocate=True`` (its whole budget allocated at construction;
the construction time is reported per entry as ``prealloc``). Values are numpy ``uint8``
arrays (cheap to encode, so the store's own cost dominates). Results: median and min-max over
rounds, microseconds of this process's CPU time (user + system) per entry: the machine may be
shared with other work (the load average is printed), and CPU time is what sharing distorts
least.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from revamper.store import CacheStore, make_store
from revamper.store.arena_layout import region_size
from revamper.store.codec import encode
from revamper.store.record import record_size

BATCH = 64


def per_entry(count: int, action: Callable[[], object]) -> float:
    """Microseconds per entry of one call of ``action`` that handles ``count`` entries."""
    start = time.process_time()
    action()
    return (time.process_time() - start) / count * 1e6


def tmpfs_bytes(path: Path) -> int:
    """Bytes the tmpfs allocated for everything under ``path``."""
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total


def make(kind: str, count: int, value: np.ndarray[Any, Any]) -> tuple[CacheStore, float]:
    """A fresh store of ``kind`` and the time its construction took (s)."""
    start = time.process_time()
    if kind == "memory":
        store = make_store("memory")
    elif kind == "arena":
        store = make_store("arena", num_samples=count)
    else:
        budget = count * region_size(record_size(encode(value)))
        store = make_store(
            "arena", num_samples=count, budget_bytes=budget, extra={"preallocate": True}
        )
    return store, time.process_time() - start


def one_run(kind: str, count: int, value: np.ndarray[Any, Any], seed: int) -> dict[str, float]:
    """Time one store of ``kind`` through epochs 0 and 1 of ``count`` entries."""
    store, built = make(kind, count, value)
    order = np.random.default_rng(seed).permutation(count).tolist()
    try:
        put = store.put
        times = {"prealloc": built / count * 1e6}
        times["put e0"] = per_entry(count, lambda: [put(i, 0, value) for i in range(count)])
        times["put e1"] = per_entry(count, lambda: [put(i, 1, value) for i in order])
        get = store.get
        times["get"] = per_entry(count, lambda: [get(i, 1) for i in order])
        batches = [order[k : k + BATCH] for k in range(0, count, BATCH)]
        ones = [1] * BATCH
        get_many = store.get_many
        times["get_many"] = per_entry(count, lambda: [get_many(b, ones[: len(b)]) for b in batches])
        assert store.stats().entries == count, store.stats()
        assert (get(order[0], 1) == value).all()
        times["bytes/entry"] = tmpfs_bytes(Path(store.handle()[store.kind])) / count
    finally:
        store.close()
    return times


def summarise(samples: list[dict[str, float]]) -> dict[str, str]:
    """Median and min-max of every figure over the rounds."""
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        out[key] = f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"
    return out


def main() -> None:
    """Run the rounds and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer entries (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    configs = [(784, 20_000), (784, 100_000), (150_528, 5_000), (150_528, 20_000)]
    if args.quick:
        configs = [(784, 2_000), (150_528, 500)]
    kinds = ["memory", "arena", "arena+prealloc"]
    raw: dict[str, dict[str, list[dict[str, float]]]] = {}
    print(f"load average before: {os.getloadavg()}")
    for r in range(args.rounds):
        for size, count in configs:
            value = np.full(size, 7, dtype=np.uint8)
            order = kinds if r % 2 == 0 else kinds[::-1]
            for kind in order:
                figures = one_run(kind, count, value, seed=r)
                raw.setdefault(f"{size} B x {count}", {}).setdefault(kind, []).append(figures)
                print(f"round {r} {size} B x {count} {kind}: {figures}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    for config, by_kind in raw.items():
        print(f"\n{config} (us per entry; median (min-max) over {args.rounds} rounds)")
        keys = list(next(iter(by_kind.values()))[0])
        print("| store | " + " | ".join(keys) + " |")
        print("| --- |" + " ---: |" * len(keys))
        for kind, samples in by_kind.items():
            cells = summarise(samples)
            print(f"| {kind} | " + " | ".join(cells[k] for k in keys) + " |")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
