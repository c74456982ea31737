"""Epochs of a forking RevamperLoader while a native thread enters Python, as under DDP.

    python benchmarks/stuck_fork.py --epochs 1000 [--threads 4] [--deadline 10]

Threads run gloo all-reduces (a one-process group) whose futures call back into Python on
gloo's own thread, as torch.distributed's communication threads do around every step; the
loader (2 forked workers, no persistent workers: two forks per epoch) runs one epoch after
another. On CPython 3.11.7 and earlier a child forked while such a thread enters Python can
hang inside ``os.fork()`` (gh-112275). Prints how many epochs completed, how many times the
loader forked an epoch's workers again, and the wall time. Run it with ``timeout``: without
the watch of :mod:`revamper.loader.worker_start` a stuck fork hangs the loop for ever.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings

import torch
import torch.distributed as dist

from revamper import RevamperLoader

try:
    from revamper.loader import worker_start
except ImportError:  # revamper before the watch: the loop then hangs at a stuck fork
    worker_start = None  # type: ignore[assignment]


class Indices(torch.utils.data.Dataset[int]):
    """Sample i is i."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> int:
        return index


def main() -> None:
    """Run the epochs; print what happened."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--deadline", type=float, default=10.0, help="START_DEADLINE_S")
    parser.add_argument("--threads", type=int, default=4, help="communicating threads")
    args = parser.parse_args()
    if worker_start is not None:
        worker_start.START_DEADLINE_S = args.deadline
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29541")
    dist.init_process_group("gloo", rank=0, world_size=1)
    stop = threading.Event()
    callbacks = [0]

    def communicate() -> None:
        tensor = torch.ones(4)
        while not stop.is_set():
            future = dist.all_reduce(tensor, async_op=True).get_future()
            future.then(lambda _: callbacks.__setitem__(0, callbacks[0] + 1)).wait()

    for _ in range(args.threads):
        threading.Thread(target=communicate, daemon=True).start()
    loader = RevamperLoader(
        Indices(), batch_size=16, shuffle=True, reuse_factor=2, seed=1, num_workers=2
    )
    restarted = 0
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(args.epochs):
            assert sorted(int(i) for batch in loader for i in batch) == list(range(64))
            print(f"epoch {epoch} done", file=sys.stderr, flush=True)
        restarted = sum("never started after their fork" in str(w.message) for w in caught)
    stop.set()
    print(
        f"python {sys.version.split()[0]}: {args.epochs} epochs ({2 * args.epochs} forks at "
        f"least) in {time.perf_counter() - started:.1f} s, workers forked again {restarted} "
        f"times, {callbacks[0]} callbacks on gloo's thread",
        flush=True,
    )
    os._exit(0)


if __name__ == "__main__":
    main()
