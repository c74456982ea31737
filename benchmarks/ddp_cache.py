"""Machine-wide cache vs per-rank caches under distributed training: memory and samples/s.

    .venv/bin/python benchmarks/ddp_cache.py [--repeats 3] [--epochs 4] [--ranks 2]
        [--images 2000] [--batch-size 32] [--workers 1] [--size 224] [--out results.json]

Starts ``--ranks`` rank processes on this machine (a gloo group, as torchrun would), each with a
RevamperLoader over revamper's built-in JPEG data (generated on first use) and the ``imagenet``
pipeline (decode, RandomResizedCrop | flip, RandAugment(2, 9), PILToTensor), reuse factor 3,
and iterates the epochs with a barrier after every batch (what DDP's gradient all-reduce does).
No model: this measures the loaders.

Each repeat runs every cache scope once, interleaved (machine, rank, machine, rank, ...), so that
a noisy neighbour hits both alike; the table gives medians over the repeats:

- samples/s per rank in epoch 0 (everything computed) and in the later epochs (steady state);
- the bytes the cache stores hold (their own count) and the /dev/shm space their directories
  take (file blocks), after the last epoch, and how many /dev/shm directories the ranks made.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Literal, get_args

import torch.distributed as dist

from revamper import RevamperLoader
from revamper.datasets.builtin import builtin_data_dir
from revamper.datasets.folder import image_folder
from revamper.pipelines import imagenet_pipeline


def shm_bytes(path: Path) -> int:
    """Bytes of tmpfs a store directory takes (allocated blocks of its files)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


Scope = Literal["machine", "rank"]
"""The loader's ``cache_scope`` values this compares."""


def rank_main(rank: int, world: int, init: str, scope: Scope, args: Any, out: Any) -> None:
    """One rank: build the loader, run the epochs in step with the others, report figures."""
    os.environ["LOCAL_WORLD_SIZE"] = str(world)  # all ranks on this machine
    dist.init_process_group(
        "gloo",
        init_method=init,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(minutes=5),
    )
    partial, final = imagenet_pipeline(size=args.size).split()
    loader = RevamperLoader(
        image_folder(args.root),
        batch_size=args.batch_size,
        shuffle=True,
        partial_transform=partial,
        final_transform=final,
        reuse_factor=3,
        seed=0,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        # Ranks are spawned (clean processes, as torchrun starts them), which makes "spawn" their
        # default start method; torchrun's ranks fork their workers, so do that here too.
        multiprocessing_context="fork" if args.workers > 0 else None,
        cache_scope=scope,
    )
    rates = []
    for _ in range(args.epochs):
        dist.barrier()
        start, samples = time.perf_counter(), 0
        for images, _targets in loader:
            samples += len(images)
            dist.barrier()
        rates.append(samples / (time.perf_counter() - start))
    store = loader.store
    assert store is not None and store.kind == "memory"
    paths: list[Any] = [None] * world
    dist.all_gather_object(paths, (store.handle()["memory"], store.stats().bytes_used))
    stores = dict(paths)  # one entry per distinct store
    result = {
        "scope": scope,
        "rank": rank,
        "rates": rates,
        "stores": len(stores),
        "store_bytes": sum(stores.values()),
        "shm_bytes": sum(shm_bytes(Path(p)) for p in stores),
    }
    dist.barrier()
    loader.close()
    dist.destroy_process_group()
    out.put(result)


def run(scope: Scope, args: Any) -> list[dict[str, Any]]:
    """One run of ``args.ranks`` rank processes with ``cache_scope=scope``."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    init = f"file://{tempfile.gettempdir()}/revamper-ddp-bench-{uuid.uuid4().hex}"
    procs = [
        ctx.Process(target=rank_main, args=(rank, args.ranks, init, scope, args, out))
        for rank in range(args.ranks)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join(60)
        if proc.exitcode != 0:
            raise SystemExit(f"a rank process failed (exit code {proc.exitcode})")
    return sorted(results, key=lambda r: r["rank"])


def main() -> None:
    """Run the interleaved repeats and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers per rank")
    parser.add_argument("--size", type=int, default=224, help="crop size")
    scopes = get_args(Scope)
    parser.add_argument("--scopes", nargs="+", choices=scopes, default=list(scopes))
    parser.add_argument("--out", type=Path, help="write every run's figures here (JSON)")
    args = parser.parse_args()
    args.root = builtin_data_dir(num_images=args.images)

    runs: dict[str, list[list[dict[str, Any]]]] = {scope: [] for scope in args.scopes}
    for repeat in range(args.repeats):
        for scope in args.scopes:
            runs[scope].append(run(scope, args))
            rates = [r["rates"] for r in runs[scope][-1]]
            print(f"repeat {repeat} {scope:7s} samples/s per rank and epoch: {rates}", flush=True)

    print(
        f"\n{args.ranks} ranks, {args.workers} worker(s) each, {args.images} images, imagenet "
        f"pipeline at {args.size}px, batch {args.batch_size}, r=3, {args.epochs} epochs; "
        f"medians of {args.repeats} interleaved repeats"
    )
    print(
        "scope    | epoch 0 samples/s/rank | later epochs samples/s/rank | stores | "
        "store MB | /dev/shm MB"
    )
    for scope, repeats in runs.items():
        first = statistics.median(r["rates"][0] for rep in repeats for r in rep)
        later = statistics.median(x for rep in repeats for r in rep for x in r["rates"][1:])
        stores = statistics.median(rep[0]["stores"] for rep in repeats)
        store_mb = statistics.median(rep[0]["store_bytes"] for rep in repeats) / 1e6
        shm_mb = statistics.median(rep[0]["shm_bytes"] for rep in repeats) / 1e6
        print(
            f"{scope:8s} | {first:22.0f} | {later:27.0f} | {stores:6.0f} | {store_mb:8.1f} | "
            f"{shm_mb:11.1f}"
        )
    if args.out:
        args.out.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=1)
        )


if __name__ == "__main__":
    main()
