"""Fixed reuse factors against ``reuse_factor="auto"`` over a sweep of consumer step times.

Issue 15's bars, measured (never asserted in a test): at every step time auto's steady-state
epoch time is within 5% of the best fixed r's; among the fixed r within 5% of the best, auto
runs the smallest; where r = 1 keeps up, auto runs r = 1 by epoch 2 at the latest.

Every loader runs in a process of its own (a fresh loader, workers and cache), for ``--epochs``
epochs of the built-in data set with the ``imagenet`` pipeline; the consumer sleeps
``step`` per batch (as a host thread does while the accelerator runs). Rounds are interleaved:
each round runs every (step, loader) pair once, in a shuffled order, so that a drift of the
machine's speed spreads over all of them. Reported: medians over rounds of each run's median
steady-state epoch (epochs 2 and later), with min-max.

Without ``--steps`` the step times are derived from a calibration run: 0, one at which r = 2
keeps up but r = 1 does not (half-way between their production times per batch), 1.15 x r = 2's
(r = 2 keeps up with room; r = 1 may be near its edge there), and one at which r = 1 keeps up
(1.3 x r = 1's).

Diversity is the share of uses that got a freshly computed partial augmentation (computed
samples / samples over the steady-state epochs): 1 for standard loading, 1/r at a fixed r.

Usage: ``python benchmarks/auto_reuse.py --out results/auto-reuse`` (about 15-25 minutes on two
cores; ``--specs auto,1`` runs only those loaders);
``--plot-only results/auto-reuse/auto_reuse.jsonl --figure docs/img/auto_reuse.png`` redraws
the figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SPECS = ("1", "2", "3", "4", "auto")
STEADY_FROM = 2


def run_one(config: dict[str, Any]) -> dict[str, Any]:
    """One loader, ``config["epochs"]`` epochs at ``config["step_ms"]`` (in its own process)."""
    import logging

    from revamper import RevamperLoader
    from revamper.datasets.builtin import builtin_data_dir
    from revamper.datasets.folder import image_folder
    from revamper.pipelines import load_pipeline

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dataset = image_folder(builtin_data_dir(num_images=config["images"], progress=False))
    partial, final = load_pipeline(config["pipeline"]).split()
    spec = config["spec"]
    reuse: Any = "auto" if spec == "auto" else int(spec)
    loader = RevamperLoader(
        dataset,
        batch_size=config["batch_size"],
        shuffle=True,
        partial_transform=partial,
        final_transform=final,
        reuse_factor=reuse,
        max_reuse_factor=config["max_reuse_factor"] if spec == "auto" else None,
        num_workers=config["workers"],
        persistent_workers=config["workers"] > 0,
        seed=config["seed"],
    )
    step = config["step_ms"] / 1000
    epochs = []
    with loader:
        for _ in range(config["epochs"]):
            start = time.perf_counter()
            for _batch in loader:
                if step > 0:
                    time.sleep(step)
            wall = time.perf_counter() - start
            stats = loader.stats.last
            assert stats is not None
            epochs.append(
                {
                    "epoch": stats.epoch,
                    "reuse_factor": stats.reuse_factor,
                    "wall_seconds": wall,
                    "wait_seconds": stats.wait_seconds,
                    "first_wait_seconds": stats.first_wait_seconds,
                    "starved_seconds": stats.starved_seconds,
                    "step_seconds": stats.step_seconds,
                    "samples": stats.samples,
                    "computed": stats.misses,
                    "predicted_rate": stats.predicted_rate,
                    "measured_rate": stats.measured_rate,
                }
            )
    return {**config, "epochs_run": epochs}


def _child(config: dict[str, Any], out: Any) -> None:
    out.send(run_one(config))


def _in_process(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_one` in a fresh process (not a pool's: the loader starts workers of its own)."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(config, send))
    process.start()
    send.close()
    result: dict[str, Any] = receive.recv()
    process.join()
    return result


def steady(run: dict[str, Any], key: str = "wall_seconds") -> float:
    """The run's median steady-state epoch figure."""
    return float(statistics.median(e[key] for e in run["epochs_run"][STEADY_FROM:]))


def diversity(run: dict[str, Any]) -> float:
    """Fresh partial augmentations per use over the steady-state epochs."""
    epochs = run["epochs_run"][STEADY_FROM:]
    return float(sum(e["computed"] for e in epochs) / sum(e["samples"] for e in epochs))


def calibrate(base: dict[str, Any]) -> list[float]:
    """Step times (ms) from r = 1's and r = 2's production times per batch at step 0.

    0; where r = 2 suffices but r = 1 does not (half-way between them); 1.15 x r = 2's (r = 2
    with room, which can be close to r = 1's edge); where r = 1 suffices (1.3 x r = 1's).
    """
    per_batch = {}
    for spec in ("1", "2"):
        run = _in_process({**base, "spec": spec, "step_ms": 0.0, "epochs": 4})
        epochs = run["epochs_run"][STEADY_FROM:]
        batches = base["images"] / base["batch_size"]
        per_batch[spec] = 1000 * statistics.median(e["wall_seconds"] for e in epochs) / batches
        say(f"calibration: r={spec} produces a batch in {per_batch[spec]:.0f} ms")
    middle = (per_batch["1"] + per_batch["2"]) / 2
    return [0.0, round(middle), round(1.15 * per_batch["2"]), round(1.3 * per_batch["1"])]


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (step, spec): medians and ranges over rounds, and the bars per step."""
    rows = []
    for step in sorted({r["step_ms"] for r in runs}):
        at_step = [r for r in runs if r["step_ms"] == step]
        for spec in SPECS:
            mine = [r for r in at_step if r["spec"] == spec]
            if not mine:
                continue
            times = [steady(r) for r in mine]
            stalls = [steady(r, "wait_seconds") for r in mine]
            rs = [e["reuse_factor"] for r in mine for e in r["epochs_run"][1:]]
            rows.append(
                {
                    "step_ms": step,
                    "spec": spec,
                    "epoch_s": statistics.median(times),
                    "epoch_min": min(times),
                    "epoch_max": max(times),
                    "stall_s": statistics.median(stalls),
                    "diversity": statistics.median(diversity(r) for r in mine),
                    "r_by_epoch": [[e["reuse_factor"] for e in r["epochs_run"]] for r in mine],
                    "r_mode": statistics.mode(rs) if rs else None,
                }
            )
    return rows


def bars(rows: list[dict[str, Any]]) -> list[str]:
    """One line per step time: does auto meet issue 15's bars there?"""
    lines = []
    for step in sorted({row["step_ms"] for row in rows}):
        at = {row["spec"]: row for row in rows if row["step_ms"] == step}
        fixed = {int(s): at[s]["epoch_s"] for s in at if s != "auto"}
        if "auto" not in at or not fixed:
            continue
        best = min(fixed.values())
        within = min(r for r, t in fixed.items() if t <= 1.05 * best)
        auto = at["auto"]
        ratio = auto["epoch_s"] / best
        # From epoch 2 on every epoch runs r = 1 (a probe of r = 1 that goes back up is no pass).
        r_1_by_2 = all(all(r == 1 for r in rs[2:]) for rs in auto["r_by_epoch"])
        lines.append(
            f"step {step:g} ms: auto {auto['epoch_s']:.2f} s/epoch = {ratio:.3f} x best fixed "
            f"({best:.2f} s) [{'OK' if ratio <= 1.05 else 'MISSED'}]; smallest fixed r within "
            f"5%: {within}, auto runs r={auto['r_mode']} "
            f"[{'OK' if auto['r_mode'] == within else 'MISSED'}]"
            + (f"; r=1 by epoch 2: {'OK' if r_1_by_2 else 'MISSED'}" if within == 1 else "")
        )
    return lines


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table for docs/benchmarks.md."""
    out = [
        "| step ms | loader | steady epoch s (min-max) | stall s/epoch | diversity | r by epoch |",
        "| ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        rs = " / ".join("".join(map(str, r)) for r in row["r_by_epoch"])
        name = "auto" if row["spec"] == "auto" else f"r={row['spec']}"
        out.append(
            f"| {row['step_ms']:g} | {name} | {row['epoch_s']:.2f} ({row['epoch_min']:.2f}-"
            f"{row['epoch_max']:.2f}) | {row['stall_s']:.2f} | {row['diversity']:.2f} | {rs} |"
        )
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Epoch time and diversity against step time, one line per fixed r and one for auto."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for spec in SPECS:
        mine = [row for row in rows if row["spec"] == spec]
        if not mine:
            continue
        steps = [row["step_ms"] for row in mine]
        label = "auto" if spec == "auto" else f"r = {spec}"
        style = {"color": "black", "linewidth": 2.5, "marker": "o"} if spec == "auto" else {}
        low = [row["epoch_s"] - row["epoch_min"] for row in mine]
        high = [row["epoch_max"] - row["epoch_s"] for row in mine]
        left.errorbar(
            steps,
            [row["epoch_s"] for row in mine],
            yerr=[low, high],
            label=label,
            capsize=3,
            **style,
        )
        right.plot(steps, [row["diversity"] for row in mine], label=label, **style)
    left.set(xlabel="consumer step per batch (ms)", ylabel="steady-state epoch (s)")
    left.set_title("Epoch time (median, min-max over rounds)")
    right.set(xlabel="consumer step per batch (ms)", ylabel="fresh partial augmentations per use")
    right.set_title("Diversity")
    right.set_ylim(0, 1.05)
    left.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def say(text: str) -> None:
    """A line of the script's report (on stdout, at once)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main() -> None:
    """Run the sweep (or redraw an earlier one) and write its table, bars and figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-reuse-factor", type=int, default=4)
    parser.add_argument("--pipeline", default="imagenet")
    parser.add_argument("--steps", help="comma-separated step times in ms (default: calibrated)")
    parser.add_argument(
        "--specs", default=",".join(SPECS), help="comma-separated loaders (default: all)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/auto-reuse"))
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--plot-only", type=Path, metavar="JSONL")
    args = parser.parse_args()
    if args.plot_only is not None:
        runs = [json.loads(line) for line in args.plot_only.read_text().splitlines()]
    else:
        base = {
            "images": args.images,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "epochs": args.epochs,
            "max_reuse_factor": args.max_reuse_factor,
            "pipeline": args.pipeline,
            "seed": 0,
        }
        steps = [float(s) for s in args.steps.split(",")] if args.steps else calibrate(base)
        say(f"step times: {steps} ms")
        args.out.mkdir(parents=True, exist_ok=True)
        runs = []
        rng = random.Random(0)
        with (args.out / "auto_reuse.jsonl").open("w") as jsonl:
            for round_ in range(args.rounds):
                order = [(step, spec) for step in steps for spec in args.specs.split(",")]
                rng.shuffle(order)
                for step, spec in order:
                    run = _in_process({**base, "spec": spec, "step_ms": step, "round": round_})
                    runs.append(run)
                    jsonl.write(json.dumps(run) + "\n")
                    jsonl.flush()
                    rs = "".join(str(e["reuse_factor"]) for e in run["epochs_run"])
                    say(f"round {round_} step {step:g} {spec}: {steady(run):.2f} s, r {rs}")
    rows = summarize(runs)
    table = markdown(rows)
    lines = bars(rows)
    say(table)
    say("\n".join(lines))
    out = args.plot_only.parent if args.plot_only is not None else args.out
    (out / "auto_reuse.md").write_text(table + "\n\n" + "\n".join(lines) + "\n")
    plot(rows, args.figure or out / "auto_reuse.png")


if __name__ == "__main__":
    main()
