"""Executes the sweep: runs in parallel processes, appended to the JSONL, resumable, with ETA.

Each run is one process doing everything itself (``num_workers=0``: the loader works in the
training process) with one torch thread, and ``jobs`` such processes run side by side. That is
the most work two cores can do, and it makes the input pipeline's cost easy to measure without
noise from the machine's other jobs: the loader's per-stage statistics are CPU seconds of the
thread that did the pipeline work (``time.thread_time``, summed over load, partial, final, cache
and collate stages), and ``process_cpu_seconds`` is the run's whole process CPU time
(``time.process_time``: training, loading and evaluation). CPU time counts only the time the
process ran, so sharing the machine stretches wall time but hardly these figures.

A sweep resumes from its JSONL: runs whose key the file already holds are not run again.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from revamper.experiments.paper_diversity import expected_versions
from revamper.experiments.sweep import RunSpec, SweepOptions, plan_runs
from revamper.experiments.sweep_records import SweepWriter, read_sweep

logger = logging.getLogger(__name__)


class SweepMismatchError(ValueError):
    """The JSONL to resume holds a different sweep (the message names what differs)."""


def execute(spec: RunSpec) -> dict[str, Any]:
    """Run one spec in this process (one torch thread, in-process loading): its run record."""
    import torch

    from revamper.experiments.tasks import load_task
    from revamper.experiments.train import TrainSettings, train_arm

    torch.set_num_threads(1)
    data = load_task(spec.task, spec.train_size, spec.test_size, spec.num_images)
    settings = TrainSettings(
        epochs=spec.epochs, recipe=spec.recipe, num_workers=0, eval_each_epoch=False
    )
    cpu = time.process_time()
    result = train_arm(spec.arm, spec.seed, data, settings)
    process_cpu = time.process_time() - cpu
    formula = expected_versions(
        spec.arm.kind, spec.arm.reuse_factor, spec.epochs, data.final_outcomes
    )
    return {
        "key": spec.key,
        "task": spec.task,
        "train_size": spec.train_size,
        "test_size": spec.test_size,
        "steps": spec.steps,
        "reuse_factor": spec.arm.reuse_factor,
        "kind": spec.arm.kind,
        "final_outcomes": data.final_outcomes,
        "diversity_formula": formula,
        "process_cpu_seconds": process_cpu,
        **result.as_dict(),
        "epochs": spec.epochs,
        "epoch_results": [
            {"epoch": e.epoch, "train_loss": e.train_loss, "test_accuracy": e.test_accuracy}
            for e in result.epochs
        ],
    }


def _start_worker() -> None:
    import torch

    torch.set_num_threads(1)


def pending(options: SweepOptions, path: Path) -> tuple[list[RunSpec], int]:
    """``(runs still to do, runs already in the file)``, checking the file is this sweep's.

    Raises:
        SweepMismatchError: If ``path`` holds a different sweep.
    """
    plan = plan_runs(options)
    if not path.exists():
        return plan, 0
    recorded, runs = read_sweep(path)
    if recorded is not None:
        mine = options.identity()
        theirs = {k: recorded.get(k) for k in mine}
        differs = sorted(k for k in mine if _jsonish(mine[k]) != theirs[k])
        if differs:
            raise SweepMismatchError(
                f"{path} holds a different sweep ({', '.join(differs)} differ): "
                "use another --out to start a new one"
            )
    done = {r["key"] for r in runs}
    return [s for s in plan if s.key not in done], len(done)


def _jsonish(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def run_sweep(
    options: SweepOptions,
    path: Path,
    environment: dict[str, Any],
    *,
    on_done: Callable[[dict[str, Any], int, int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> int:
    """Run every pending run of the sweep and append its record to ``path``.

    Args:
        options: The sweep.
        path: Its JSONL (created, or resumed from).
        environment: The ``environment`` record of this session.
        on_done: Called with each finished run's record, the runs done in this session and
            the runs this session has to do.
        on_start: Called with ``(runs to do, runs already recorded)`` before the first run.

    Returns:
        The runs done in this session.
    """
    todo, already = pending(options, path)
    fresh = not path.exists()
    if on_start is not None:
        on_start(len(todo), already)
    started = time.perf_counter()
    done = 0
    with SweepWriter(path) as writer:
        if fresh:
            writer.emit("sweep_options", options.as_dict())
        writer.emit("environment", {**environment, "resumed_with_runs": already})
        for record in _results(todo, options.jobs):
            writer.emit("run", record)
            done += 1
            if on_done is not None:
                on_done(record, done, len(todo))
        import os

        load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        writer.emit(
            "end",
            {"wall_seconds": time.perf_counter() - started, "runs": done, "load_average": load},
        )
    return done


def _results(todo: Sequence[RunSpec], jobs: int) -> Any:
    """Each run's record as it finishes: in this process for one job, else in a pool."""
    if jobs <= 1:
        for spec in todo:
            yield execute(spec)
        return
    context = multiprocessing.get_context("spawn")  # no forked OpenMP or loader state
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_start_worker
    ) as pool:
        futures = [pool.submit(execute, spec) for spec in todo]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
