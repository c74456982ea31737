"""The benchmark's outputs: a terminal table, a JSON-lines file and a PNG figure.

The JSON-lines file holds one object per line, each with a ``type``: ``environment`` (machine
and versions), ``options`` (how it was run), ``epoch`` (one per scenario, repeat and epoch, with
the per-batch waits), ``run`` (memory per scenario run) and ``summary`` (one per scenario).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from revamper.bench.harness import RunRecord
from revamper.bench.summary import REFERENCES, ScenarioSummary, Spread

SCHEMA_VERSION = 1


def write_jsonl(
    path: Path,
    environment: dict[str, Any],
    options: dict[str, Any],
    runs: Sequence[RunRecord],
    summaries: Sequence[ScenarioSummary],
) -> None:
    """Write every record of a benchmark to ``path`` as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as file:

        def emit(kind: str, body: dict[str, Any]) -> None:
            file.write(json.dumps({"type": kind, "schema": SCHEMA_VERSION, **body}) + "\n")

        emit("environment", environment)
        emit("options", options)
        for run in runs:
            for epoch in run.epochs:
                emit(
                    "epoch",
                    {
                        "scenario": epoch.scenario,
                        "repeat": epoch.repeat,
                        "epoch": epoch.epoch,
                        "samples": epoch.samples,
                        "wall_seconds": epoch.wall_seconds,
                        "samples_per_second": epoch.samples_per_second,
                        "stall_seconds": epoch.stall_seconds,
                        "block_read_bytes": epoch.block_read_bytes,
                        "waits": epoch.waits,
                        "stats": epoch.stats,
                    },
                )
            emit(
                "run",
                {
                    "scenario": run.scenario,
                    "repeat": run.repeat,
                    "peak_memory_bytes": run.peak_memory_bytes,
                    "cache_bytes": run.cache_bytes,
                    "ram_bytes": run.ram_bytes,
                    "entries": run.entries,
                },
            )
        for summary in summaries:
            emit("summary", summary.as_dict())


def _fmt_spread(spread: Spread | None, digits: int = 0, suffix: str = "") -> str:
    if spread is None:
        return "-"
    return f"{spread.median:.{digits}f}{suffix} ({spread.low:.{digits}f}–{spread.high:.{digits}f})"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}{suffix}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


@dataclasses.dataclass
class TableData:
    """A report table as plain text, rendered to the terminal (rich) or to Markdown."""

    title: str
    headers: list[str]
    rows: list[list[str]]


def tables(summaries: Sequence[ScenarioSummary], *, step_ms: float) -> list[TableData]:
    """The report's tables: throughput, where the time goes, and the disk cache (if used)."""
    out = [_speed_table(summaries, step_ms), _cost_table(summaries)]
    if any(s.versus or s.of_limit for s in summaries):
        out.append(_reference_table(summaries))
    with_disk = [s for s in summaries if s.disk is not None]
    if with_disk:
        out.append(_disk_table(with_disk))
    return out


def _speed_table(summaries: Sequence[ScenarioSummary], step_ms: float) -> TableData:
    headers = ["scenario", "epoch 0 samples/s", "steady samples/s", "× standard", "bound"]
    if step_ms == 0:  # the bound is for the loader alone; a consumer step caps throughput
        headers.append("of bound")
    else:
        headers += ["epoch s (× standard)", "stall s/epoch", "r", "diversity"]
    rows = []
    for s in summaries:
        row = [
            s.scenario,
            _fmt_spread(s.epoch0_sps),
            _fmt_spread(s.steady_sps),
            _fmt_spread(s.steady_speedup, 2, "x"),
            _fmt(s.bound, ".2f", "x"),
        ]
        if step_ms == 0:
            fraction = None if s.fraction_of_bound is None else s.fraction_of_bound * 100
            row.append(_fmt(fraction, ".0f", "%"))
        else:
            epoch_s = _fmt(s.epoch_seconds.median if s.epoch_seconds else None, ".2f")
            ratio = _fmt(s.epoch_time_speedup.median if s.epoch_time_speedup else None, ".2f", "x")
            row += [f"{epoch_s} ({ratio})", _fmt_spread(s.stall_seconds, 2)]
            row += [",".join(map(str, s.reuse_factors)) or "-", _fmt(s.diversity, ".2f")]
        rows.append(row)
    return TableData(
        "Throughput: medians over repeats (min–max); steady state = epochs 1+"
        + ("" if step_ms == 0 else "; diversity = fresh partial augmentations per use"),
        headers,
        rows,
    )


def _cost_table(summaries: Sequence[ScenarioSummary]) -> TableData:
    headers = ["scenario", "wait ms p50/p95/max", "wait CV", "batch CPU CV", "misses/epoch"]
    headers += ["load", "partial", "final", "cache", "collate", "cache MB", "peak MB"]
    rows = []
    for s in summaries:
        cpu = s.cpu_ms_per_sample
        misses = s.misses_per_epoch
        rows.append(
            [
                s.scenario,
                "/".join(_fmt(s.wait_ms.get(k), ".0f") for k in ("p50", "p95", "max")),
                _fmt(s.wait_cv, ".2f"),
                _fmt(s.batch_cpu_cv, ".3f"),
                f"{misses['planned'] + misses['unplanned']:.0f}",
                f"{cpu['load']:.2f}",
                f"{cpu['partial']:.2f}",
                f"{cpu['final']:.2f}",
                f"{cpu['cache_read'] + cpu['cache_write']:.2f}",
                f"{cpu['collate']:.2f}",
                _mb(s.cache_bytes),
                _mb(s.peak_memory_bytes),
            ]
        )
    return TableData(
        "Where it goes (steady state): consumer wait per batch, CPU ms per sample, memory",
        headers,
        rows,
    )


def _reference_table(summaries: Sequence[ScenarioSummary]) -> TableData:
    refs = [ref for ref in REFERENCES if any(ref in s.versus for s in summaries)]
    headers = ["scenario"] + [f"× {ref}" for ref in refs]
    with_torch = "torch" in refs
    headers += (["epoch 0 × torch"] if with_torch else []) + ["of limit", "CPU ms/sample"]
    rows = []
    for s in summaries:
        row = [s.scenario] + [_fmt_spread(s.versus.get(ref), 2, "x") for ref in refs]
        if with_torch:
            row.append(_fmt_spread(s.epoch0_versus_torch, 2, "x"))
        row.append(_fmt_percent(s.of_limit))
        row.append(_fmt(s.cpu_ms_per_sample.get("total"), ".2f"))
        rows.append(row)
    return TableData(
        "Against the references: medians of per-repeat ratios (min–max); of limit = steady "
        "samples/s over the limit scenario's (r -> infinity, same pipeline and cache); CPU ms "
        "per delivered sample in the steady state, summed over stages",
        headers,
        rows,
    )


def _fmt_percent(spread: Spread | None) -> str:
    if spread is None:
        return "-"
    return f"{spread.median:.0%} ({spread.low:.0%}–{spread.high:.0%})"


def render_tables(summaries: Sequence[ScenarioSummary], *, step_ms: float) -> list[Any]:
    """The report's tables as ``rich`` tables (import of ``rich`` deferred to here)."""
    from rich.table import Table

    out = []
    for data in tables(summaries, step_ms=step_ms):
        table = Table(title=data.title, title_justify="left", header_style="bold")
        for position, header in enumerate(data.headers):
            table.add_column(header, justify="left" if position == 0 else "right")
        for row in data.rows:
            table.add_row(*row)
        out.append(table)
    return out


def markdown(summaries: Sequence[ScenarioSummary], *, step_ms: float, command: str) -> str:
    """The report as Markdown: the command, the tables and the headline sentences."""
    parts = [f"Command: `{command}`", ""]
    for data in tables(summaries, step_ms=step_ms):
        parts += [f"**{data.title}**", "", "| " + " | ".join(data.headers) + " |"]
        parts.append("|" + "|".join([" --- "] + [" ---: "] * (len(data.headers) - 1)) + "|")
        parts += ["| " + " | ".join(row) + " |" for row in data.rows]
        parts.append("")
    parts += [f"- {line}" for line in headlines(summaries, step_ms=step_ms)]
    return "\n".join(parts) + "\n"


def headlines(summaries: Sequence[ScenarioSummary], *, step_ms: float) -> list[str]:
    """One plain sentence per caching scenario: what it bought against ``standard``."""
    lines = []
    for s in summaries:
        if s.steady_speedup is None or s.scenario == "standard" or s.reuse_factor < 2:
            continue
        text = f"{s.scenario}: {s.steady_speedup.median:.2f}x standard's steady-state samples/s"
        if step_ms == 0 and s.bound and s.fraction_of_bound:
            text += f" ({s.fraction_of_bound:.0%} of the {s.bound:.2f}x bound)"
        if s.epoch0_speedup is not None:
            text += f", epoch 0 at {s.epoch0_speedup.median:.2f}x"
        text += "".join(f"; {v.median:.2f}x {ref}" for ref, v in s.versus.items())
        if s.epoch0_versus_torch is not None:
            text += f" (epoch 0 {s.epoch0_versus_torch.median:.2f}x torch's)"
        if s.of_limit is not None:
            text += f"; {s.of_limit.median:.0%} of the limit"
        if step_ms > 0 and s.epoch_time_speedup is not None and s.stall_seconds is not None:
            text += (
                f"; epochs {s.epoch_time_speedup.median:.2f}x faster end to end, "
                f"{s.stall_seconds.median:.2f} s stalled per epoch"
            )
        lines.append(text)
    return lines


def _disk_table(summaries: Sequence[ScenarioSummary]) -> TableData:
    headers = ["scenario", "RAM MB", "disk MB", "read MB", "block dev MB", "LRU MB", "read / disk"]
    rows = []
    for s in summaries:
        disk = s.disk or {}
        on_disk = disk.get("disk_bytes")
        read = disk.get("read_per_epoch")
        rows.append(
            [
                s.scenario,
                _mb(disk.get("ram_bytes")),
                _mb(on_disk),
                _mb(read),
                _mb(disk.get("block_read_per_epoch")),
                _mb(disk.get("lru_read_per_epoch")),
                _fmt(read / on_disk if read is not None and on_disk else None, ".2f"),
            ]
        )
    return TableData(
        "Disk cache (steady state, per epoch): read from the disk tier vs an LRU of the RAM "
        "budget's size",
        headers,
        rows,
    )


def plot(path: Path, runs: Sequence[RunRecord], summaries: Sequence[ScenarioSummary]) -> None:
    """Save a PNG: throughput per epoch per scenario, and the per-batch wait distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.scenario for s in summaries]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    for name in names:
        per_epoch: dict[int, list[float]] = {}
        for run in runs:
            if run.scenario == name:
                for e in run.epochs:
                    per_epoch.setdefault(e.epoch, []).append(e.samples_per_second)
        epochs = sorted(per_epoch)
        medians = [sorted(per_epoch[e])[len(per_epoch[e]) // 2] for e in epochs]
        lows = [min(per_epoch[e]) for e in epochs]
        highs = [max(per_epoch[e]) for e in epochs]
        (line,) = left.plot(epochs, medians, marker="o", label=name)
        left.fill_between(epochs, lows, highs, color=line.get_color(), alpha=0.15)
    left.set_xlabel("epoch")
    left.set_ylabel("samples/s (median, band: min–max over repeats)")
    left.set_title("Throughput per epoch")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    left.legend(fontsize="small")

    waits = [
        [w * 1e3 for run in runs if run.scenario == name for e in run.epochs[1:] for w in e.waits]
        for name in names
    ]
    right.boxplot(waits, showfliers=True)
    right.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    right.set_ylabel("consumer wait per batch, ms (epochs >= 1)")
    right.set_title("Wait-time distribution")
    right.grid(alpha=0.3, axis="y")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def options_dict(options: Any) -> dict[str, Any]:
    """A dataclass of options as a JSON-ready dict."""
    return dataclasses.asdict(options)
