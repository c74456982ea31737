"""Choose a configuration from the predictions, and say why each other one lost.

The rule: among the configurations whose diversity is at least ``min_diversity`` of standard
training's and whose cache fits in the budget, take the fastest. Predictions carry a few per cent
of measurement noise, so configurations within ``tolerance`` of the fastest count as equally fast,
and among those the one with the most diversity wins, then the one with the smallest cache (a
split one step later that saves a cheap flip should not cost diversity). Standard loading (no
cache, full diversity) always qualifies, so there is always a choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from revamper.tune.predict import Candidate

_EPS = 1e-9


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Why a configuration was or was not chosen.

    Attributes:
        chosen: Whether it is the recommendation.
        kind: ``"chosen"``, ``"diversity"`` (too little), ``"budget"`` (too big), ``"both"``,
            ``"slower"``, or ``"tie"`` (as fast, but less diverse or bigger).
        reason: The explanation in plain words.
    """

    chosen: bool
    kind: str
    reason: str


def format_bytes(count: float) -> str:
    """``"1.5 GB"``, ``"301 MB"``, ``"12 kB"`` (decimal units, like ``--budget``)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            value = count / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{count:.0f} B"


def choose(
    candidates: Sequence[Candidate],
    *,
    min_diversity: float = 0.9,
    budget_bytes: int | None = None,
    tolerance: float = 0.02,
) -> tuple[Candidate, list[Verdict]]:
    """Pick the recommended configuration and judge every candidate.

    Args:
        candidates: The predictions (see :func:`~revamper.tune.predict.predict`).
        min_diversity: Lowest acceptable diversity, as a fraction of standard's (0 to 1).
        budget_bytes: Most bytes the cache may hold, or ``None`` for no limit.
        tolerance: Relative throughput difference below which two configurations tie.

    Returns:
        The chosen candidate, and one verdict per candidate, in the same order.

    Raises:
        ValueError: If there are no candidates or an argument is out of range.
    """
    if not candidates:
        raise ValueError("there are no configurations to choose from")
    if not 0 <= min_diversity <= 1:
        raise ValueError(f"min_diversity must be between 0 and 1, got {min_diversity}")
    if budget_bytes is not None and budget_bytes < 0:
        raise ValueError(f"budget_bytes must be 0 or more, got {budget_bytes}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be between 0 and 1, got {tolerance}")

    def diverse(c: Candidate) -> bool:
        return c.is_standard or c.diversity >= min_diversity - _EPS

    def fits(c: Candidate) -> bool:
        return c.is_standard or budget_bytes is None or c.cache_bytes <= budget_bytes

    eligible = [c for c in candidates if diverse(c) and fits(c)]
    if not eligible:  # cannot happen when standard is among the candidates
        eligible = list(candidates)
    fastest = max(c.samples_per_second for c in eligible)
    ties = [c for c in eligible if c.samples_per_second >= fastest * (1 - tolerance)]
    chosen = max(ties, key=lambda c: (c.diversity, -c.cache_bytes, c.samples_per_second))
    tied = {id(c) for c in ties}
    verdicts = [
        _judge(c, chosen, diverse(c), fits(c), id(c) in tied, min_diversity, budget_bytes)
        for c in candidates
    ]
    return chosen, verdicts


def _judge(
    candidate: Candidate,
    chosen: Candidate,
    diverse: bool,
    fits: bool,
    tied: bool,
    min_diversity: float,
    budget_bytes: int | None,
) -> Verdict:
    if candidate is chosen:
        if candidate.is_standard:
            reason = (
                "chosen: no cached configuration keeps enough diversity within the budget "
                "while being faster, so load as usual"
            )
        else:
            reason = "chosen: the fastest that keeps enough diversity and fits the budget"
        return Verdict(True, "chosen", reason)
    problems = []
    if not diverse:
        echo = " (the final part adds no randomness: data echoing)" if _is_echo(candidate) else ""
        problems.append(
            f"too little diversity: {candidate.diversity:.2f} of standard's, below "
            f"{min_diversity:.2f}{echo}"
        )
    if not fits:
        assert budget_bytes is not None
        problems.append(
            f"too big: its cache needs {format_bytes(candidate.cache_bytes)}, over the "
            f"{format_bytes(budget_bytes)} budget"
        )
    if problems:
        kind = "both" if len(problems) == 2 else ("diversity" if not diverse else "budget")
        return Verdict(False, kind, "; ".join(problems))
    gap = 1 - candidate.samples_per_second / chosen.samples_per_second
    if tied:
        if candidate.diversity < chosen.diversity:
            why = "keeps more diversity"
        elif candidate.cache_bytes > chosen.cache_bytes:
            why = "needs less memory"
        else:
            why = "is a little faster"
        return Verdict(
            False, "tie", f"as fast within the noise ({abs(gap):.0%} apart), but the choice {why}"
        )
    what = "standard loading, no cache: " if candidate.is_standard else ""
    return Verdict(
        False,
        "slower",
        f"{what}slower: {candidate.samples_per_second:.0f} samples/s predicted, "
        f"{gap:.0%} below the choice",
    )


def _is_echo(candidate: Candidate) -> bool:
    return candidate.diversity_measured <= 1 / candidate.reuse_factor + 1e-6
