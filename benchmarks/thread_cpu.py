"""Where a loader's core time goes: CPU of every process and thread, against its stage timers.

The bench's "other" column (section 13 of docs/benchmarks.md) is core time per image that no
stage timer counts: 2 cores / (images per second), less the workers' stage CPU. It mixes the main
process's work, the workers' threads and loop outside the stages, and cores left idle. This
script separates them: it runs one loader over an ``ImageFolder`` for two warm-up epochs and
``--epochs`` measured ones, and reads ``utime + stime`` of every thread of the process and its
workers from ``/proc`` before and after. Per delivered image it prints each process's main
thread and other threads, the total, the idle rest (cores x wall - total), and for revamper the
stage CPU the loader itself recorded (``loader.stats``).

Each loader runs in its own process, in alternating rounds (``torch``, then r, then ``torch``
...), so a slow phase of the machine affects both.

Usage: ``python benchmarks/thread_cpu.py --data /tmp/bars-data/jpeg500x375 --rounds 3`` (about
10 s per run). Linux only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def thread_seconds() -> dict[tuple[int, int], float]:
    """CPU seconds (user + system) of every thread of this process and its descendants."""
    from revamper.bench.procfs import process_tree

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[tuple[int, int], float] = {}
    for pid in process_tree(os.getpid()):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            out[(pid, int(tid))] = (int(fields[11]) + int(fields[12])) / tick
    return out


def make_loader(kind: str, root: str, batch_size: int) -> Any:
    """A plain torch DataLoader (``kind == "torch"``) or a RevamperLoader at r = ``kind``."""
    import torch
    from torchvision.datasets import ImageFolder

    from revamper import RevamperLoader
    from revamper.pipelines import load_pipeline, read_bytes

    dataset = ImageFolder(root, loader=read_bytes)
    pipeline = load_pipeline("imagenet")
    options: dict[str, Any] = {
        "batch_size": batch_size,
        "shuffle": True,
        "num_workers": 2,
        "persistent_workers": True,
    }
    if kind == "torch":
        # A bare DataLoader, not the bench's PlainTorchLoader: that one times every item in
        # the workers, and this script is about what no timer sees.
        full = pipeline.full()

        class Transformed(torch.utils.data.Dataset[Any]):
            def __len__(self) -> int:
                return len(dataset)

            def __getitem__(self, index: int) -> Any:
                item, label = dataset[index]
                return full(item), label

        return torch.utils.data.DataLoader(Transformed(), **options)
    partial, final = pipeline.split()
    return RevamperLoader(
        dataset,
        partial_transform=partial,
        final_transform=final,
        reuse_factor=int(kind),
        **options,
    )


def measure(kind: str, root: str, batch_size: int, epochs: int) -> dict[str, float]:
    """One run: ms per delivered image by where the CPU went (in this process)."""
    loader = make_loader(kind, root, batch_size)
    for _ in range(2):  # warm up: epoch 0 and one steady epoch
        for _ in loader:
            pass
    before, start = thread_seconds(), time.perf_counter()
    images = 0
    for _ in range(epochs):
        for batch in loader:
            images += len(batch[0])
    wall = time.perf_counter() - start
    after = thread_seconds()
    me = os.getpid()
    parts: dict[str, float] = collections.defaultdict(float)
    for (pid, tid), seconds in after.items():
        spent = seconds - before.get((pid, tid), 0.0)
        where = "main process" if pid == me else "workers"
        what = "main thread" if pid == tid else "other threads"
        parts[f"{where}, {what}"] += spent
    row = {key: 1000 * value / images for key, value in parts.items()}
    row["total CPU"] = sum(row.values())
    row["idle (cores x wall - total)"] = (
        1000 * (os.cpu_count() or 1) * wall / images - row["total CPU"]
    )
    row["images/s"] = images / wall
    stats = getattr(loader, "stats", None)
    if stats is not None:
        steady = [stats[e] for e in range(2, 2 + epochs)]
        stage = sum(s.cpu_total for s in steady)
        row["of which stage timers"] = 1000 * stage / images
        loader.close()
    return row


def main() -> None:
    """Alternate the two loaders over ``--rounds`` and print the table (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an ImageFolder of JPEGs")
    parser.add_argument("--reuse-factor", default="3", help="r of the revamper loader")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="measured epochs per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one loader, print row
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.data, args.batch_size, args.epochs)))
        return
    rows: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    for round_ in range(args.rounds):
        for kind in ("torch", args.reuse_factor):
            command = [sys.executable, __file__, "--data", args.data, "--one", kind]
            command += ["--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows[kind].append(row)
            print(f"round {round_} {kind}: {row['images/s']:.0f} images/s", file=sys.stderr)
    keys = sorted({key for runs in rows.values() for run in runs for key in run})
    print("| ms per image (median, min-max) | " + " | ".join(rows) + " |")
    print("| --- |" + " ---: |" * len(rows))
    for key in keys:
        cells = []
        for runs in rows.values():
            values = [run[key] for run in runs if key in run]
            if not values:
                cells.append("-")
                continue
            digits = 0 if key == "images/s" else 3
            cells.append(
                f"{statistics.median(values):.{digits}f} "
                f"({min(values):.{digits}f}-{max(values):.{digits}f})"
            )
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
