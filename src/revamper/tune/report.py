"""``revamper tune``'s outputs: terminal tables (rich) and the throughput-diversity figure.

The figure puts every (split, r) at its predicted samples/s against its diversity, so the
trade-off is visible at a glance: the paper's "sweet spot" is the highest point right of the
diversity threshold, and it is marked.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from revamper.tune.choice import format_bytes
from revamper.tune.recommendation import Recommendation

_STYLES = {
    "chosen": "bold green",
    "diversity": "red",
    "budget": "yellow",
    "both": "red",
    "tie": "",
    "slower": "",
}


def _outcomes(value: float) -> str:
    return "continuous" if math.isinf(value) else f"~{value:.0f}"


def render_tables(recommendation: Recommendation) -> list[Any]:
    """Three ``rich`` tables: the steps, the split points, and every configuration."""
    from rich.table import Table

    rec = recommendation
    m = rec.measurements
    steps = Table(
        title=f"Steps of {rec.pipeline}: CPU ms per item ({m.profile.items} items, one thread)",
        title_justify="left",
        header_style="bold",
    )
    for header in ("#", "step", "median", "mean"):
        steps.add_column(header, justify="left" if header == "step" else "right")
    steps.add_row(
        "",
        "load (read the item)",
        f"{m.profile.load.median * 1e3:.3f}",
        f"{m.profile.load.mean * 1e3:.3f}",
    )
    for number, step in enumerate(m.profile.steps, 1):
        steps.add_row(
            str(number), step.name, f"{step.cost.median * 1e3:.3f}", f"{step.cost.mean * 1e3:.3f}"
        )

    splits = Table(
        title=(
            f"Split points: cached entry, store costs (ms), distinct outputs of the final part "
            f"in {m.diversity.standard.draws} uses"
        ),
        title_justify="left",
        header_style="bold",
    )
    for header in ("split", "cached | re-run", "entry", "put", "get", "distinct", "|A_F|"):
        splits.add_column(header, justify="left" if header.startswith("cached") else "right")
    for cached in m.profile.splits:
        measured = m.diversity.split(cached.split)
        splits.add_row(
            str(cached.split),
            m.profile.describe_split(cached.split),
            format_bytes(cached.entry_bytes),
            f"{cached.put.median * 1e3:.3f}",
            f"{cached.get.median * 1e3:.3f}",
            f"{measured.distinct:.1f}",
            _outcomes(measured.outcomes),
        )

    table = Table(
        title=(
            f"Every configuration: predicted steady-state loader throughput ({rec.assumption}), "
            f"cache for {rec.num_samples:,} samples, diversity relative to standard"
        ),
        title_justify="left",
        header_style="bold",
    )
    for header in ("configuration", "samples/s", "× std", "cache", "div formula", "div measured"):
        table.add_column(header, justify="left" if header == "configuration" else "right")
    table.add_column("verdict", justify="left")
    for candidate, verdict in zip(rec.candidates, rec.verdicts, strict=True):
        table.add_row(
            candidate.label,
            f"{candidate.samples_per_second:.0f}",
            f"{candidate.speedup:.2f}x",
            "-" if candidate.is_standard else format_bytes(candidate.cache_bytes),
            f"{candidate.diversity_formula:.3f}",
            f"{candidate.diversity_measured:.3f}",
            verdict.reason,
            style=_STYLES.get(verdict.kind, ""),
        )
    return [steps, splits, table]


def plot(path: Path, recommendation: Recommendation) -> None:
    """Save a PNG of predicted samples/s against diversity, one point per (split, r).

    Colours are split points, labels are reuse factors, hollow points do not fit the memory
    budget, the shaded area is below the diversity threshold, and the star is the choice. The
    left panel shows every configuration, the right one zooms in on those diverse enough.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = recommendation
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(14, 6.5), constrained_layout=True)
    _draw(whole, rec, low=0.0)
    low = min(c.diversity for c in rec.candidates if c.diversity >= rec.min_diversity)
    span = max(1.0 - low, 0.005)
    _draw(zoom, rec, low=max(low - 0.15 * span, 0.0))
    whole.set_title("every configuration")
    zoom.set_title(f"zoom: the configurations with diversity {rec.min_diversity:.2f} or more")
    handles, labels = whole.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    budget = "" if rec.budget_bytes is None else f", budget {format_bytes(rec.budget_bytes)}"
    fig.suptitle(
        f"{rec.pipeline}: predicted loader throughput vs diversity\n"
        f"{rec.assumption}; {rec.num_samples:,} samples{budget}",
        fontsize=11,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw(ax: Any, rec: Recommendation, *, low: float) -> None:
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("viridis")
    profile = rec.measurements.profile
    splits = sorted({c.split for c in rec.candidates if not c.is_standard})
    shown = [c for c in rec.candidates if c.diversity >= low]
    for position, split in enumerate(splits):
        colour = colours(position / max(len(splits) - 1, 1))
        rows = [c for c in rec.candidates if c.split == split and not c.is_standard]
        for c in rows:
            fits = rec.budget_bytes is None or c.cache_bytes <= rec.budget_bytes
            ax.scatter(
                c.diversity,
                c.samples_per_second,
                s=60,
                color=colour if fits else "none",
                edgecolors=colour,
                linewidths=1.5,
                label=f"split {split}: {profile.describe_split(split)}" if c is rows[0] else None,
                zorder=3,
            )
            if c in shown:
                ax.annotate(
                    f"r={c.reuse_factor}",
                    (c.diversity, c.samples_per_second),
                    textcoords="offset points",
                    xytext=(6, -3),
                    fontsize=7,
                )
    ax.scatter(
        1.0,
        rec.standard.samples_per_second,
        marker="s",
        s=70,
        color="black",
        label="standard (no cache)",
        zorder=4,
    )
    chosen = rec.chosen
    ax.scatter(
        chosen.diversity,
        chosen.samples_per_second,
        marker="*",
        s=450,
        color="crimson",
        edgecolors="black",
        zorder=5,
        label=f"recommended: {chosen.label}",
    )
    ax.annotate(
        f"sweet spot: {chosen.label}\n{chosen.samples_per_second:.0f} samples/s, "
        f"{chosen.speedup:.2f}x standard",
        (chosen.diversity, chosen.samples_per_second),
        textcoords="offset points",
        xytext=(-40, 28),
        ha="right",
        fontsize=9,
        arrowprops={"arrowstyle": "->", "color": "crimson"},
    )
    top = max(c.samples_per_second for c in shown) if shown else chosen.samples_per_second
    bottom = min(c.samples_per_second for c in shown) if shown else 0.0
    ax.set_ylim(bottom * 0.9, top * 1.15)
    right = 1.0 + 0.04 * (1.0 - low)
    ax.set_xlim(low, right)
    if rec.min_diversity > low:
        ax.axvspan(low, rec.min_diversity, color="grey", alpha=0.12, lw=0)
        ax.axvline(rec.min_diversity, color="grey", ls="--", lw=1)
        ax.text(
            rec.min_diversity,
            bottom * 0.9,
            f" min diversity {rec.min_diversity:.2f}",
            fontsize=8,
            color="grey",
            va="bottom",
            clip_on=True,
        )
    ax.set_xlabel("diversity relative to standard (lower of formula and measured)")
    ax.set_ylabel("predicted loader samples/s")
    ax.grid(alpha=0.3)
