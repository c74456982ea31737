"""Where one cache write's time goes: encoding, the file system, and the store's bookkeeping.

    .venv/bin/python benchmarks/cache_write_cost.py [--entries 1500] [--repeats 5]

Writes ``--entries`` 224x224 RGB PIL images (150 KB each, what the ``imagenet`` pipeline caches)
in one process, and times, per entry (median over ``--repeats``, each on fresh files):

- ``encode``: the codec turning the image into a record's bytes (PIL's RGBX-to-RGB pack);
- ``new tmpfs file``: writing those bytes into a new file on /dev/shm (the kernel allocates
  and fills fresh pages: what every write of epoch 0 costs);
- ``rewrite in place``: writing the same bytes over pages that already exist (what a store
  that reused its slots would pay);
- ``SharedMemoryStore.put``: the whole put of a new entry, and of a newer generation over it.

This is a microbenchmark of one process without contention; in the loader, with two workers
sharing the memory bus, the bench measures about twice these figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from revamper.store import codec, make_store, record


def per_entry(count: int, action: Callable[[int], object]) -> float:
    """Microseconds per call of ``action(i)`` for ``i`` in ``range(count)``."""
    start = time.perf_counter()
    for i in range(count):
        action(i)
    return (time.perf_counter() - start) / count * 1e6


def one_repeat(images: list[Image.Image], count: int) -> dict[str, float]:
    """Time every step once, on fresh files."""
    encoded = [codec.encode(image) for image in images]
    times = {"encode": per_entry(count, lambda i: codec.encode(images[i % len(images)]))}
    scratch = tempfile.mkdtemp(dir="/dev/shm")
    try:

        def write(i: int, flags: int = os.O_CREAT | os.O_TRUNC) -> None:
            fd = os.open(f"{scratch}/{i}", os.O_WRONLY | flags, 0o600)
            try:
                segments = record.record_segments(i, 0, encoded[i % len(encoded)], checksum=False)
                record.write_segments(fd, segments)
            finally:
                os.close(fd)

        times["new tmpfs file"] = per_entry(count, write)
        times["rewrite in place"] = per_entry(count, lambda i: write(i, 0))  # pages stay
    finally:
        shutil.rmtree(scratch)
    store = make_store("memory")
    try:
        times["SharedMemoryStore.put, new"] = per_entry(
            count, lambda i: store.put(i, 0, images[i % len(images)])
        )
        times["SharedMemoryStore.put, newer generation"] = per_entry(
            count, lambda i: store.put(i, 1, images[i % len(images)])
        )
    finally:
        store.close()
    return times


def main() -> None:
    """Run the repeats and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)) for _ in range(8)
    ]
    runs = [one_repeat(images, args.entries) for _ in range(args.repeats)]
    lines = [f"µs per 150 KB entry, median of {args.repeats} repeats of {args.entries} entries:"]
    for name in runs[0]:
        values = [run[name] for run in runs]
        median, low, high = statistics.median(values), min(values), max(values)
        lines.append(f"  {name:40s} {median:7.1f}  ({low:.1f}-{high:.1f})")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
