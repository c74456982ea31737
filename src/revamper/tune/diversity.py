"""Diversity of refurbished samples: the paper's formula (DESIGN section 4) and a measurement.

**The formula.** With the full augmentation drawing uniformly from ``|A|`` outcomes and the final
part from ``|A_F|``, the expected number of distinct fully augmented versions of one sample seen
in ``k`` epochs is ``|A| (1 - (1 - 1/|A|)^k)`` for standard training, and for refurbishing at
reuse factor ``r`` it is ``|A| (1 - (1 - (|A_F|/|A|)(1 - (1 - 1/|A_F|)^r))^(k/r))``. Their ratio
over one reuse cycle (``k = r``) is the *normalised diversity*; for large ``|A|`` it tends to
``(|A_F|/r)(1 - (1 - 1/|A_F|)^r)``. Outcome counts may be ``math.inf`` (a continuous transform).

**The measurement.** Real transforms are partly continuous and far from uniform, so
:func:`measure_diversity` also counts: it applies each candidate final part many times to the same
cached sample (a private copy every time, as a cache hit gives) and hashes the outputs' bytes.
Within each run of ``r`` consecutive uses it counts the distinct outputs, which is what one cached
entry yields over its ``r`` uses. The cached sample of split 0 is the raw item, whose final part
is the whole pipeline: that is standard training, the reference of the normalised figure. The
distinct count over all draws also estimates ``|A_F|`` for the formula (:func:`estimate_outcomes`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import pickle
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from revamper.loader.dataset_reads import read_item
from revamper.loader.layout import SampleLayout
from revamper.pipelines import Pipeline
from revamper.tune.profile import ProfileError
from revamper.tune.sampling import isolated_rng, sample_indices, single_thread
from revamper.tune.steps import candidate_splits

logger = logging.getLogger(__name__)

REUSE_FACTORS = (1, 2, 3, 4, 5)
"""The reuse factors tuning considers."""


# -- the formula ------------------------------------------------------------------------------
def _hit(chance: float, tries: float) -> float:
    """``1 - (1 - chance)^tries``: the probability of at least one success, computed stably."""
    if tries <= 0:
        return 0.0
    if chance >= 1:
        return 1.0
    return -math.expm1(tries * math.log1p(-chance))


def _seen(outcomes: float, draws: float) -> float:
    """Expected distinct outcomes among ``draws`` uniform draws from ``outcomes``."""
    if math.isinf(outcomes):
        return draws
    return outcomes * _hit(1.0 / outcomes, draws)


def unique_standard(outcomes: float, epochs: float) -> float:
    """``U_std``: expected distinct versions of one sample in ``epochs`` of standard training."""
    return _seen(outcomes, epochs)


def unique_echoing(outcomes: float, epochs: float, reuse_factor: int) -> float:
    """``U_echo``: the same with data echoing at ``reuse_factor``."""
    return _seen(outcomes, epochs / reuse_factor)


def unique_refurbishing(
    outcomes: float, final_outcomes: float, epochs: float, reuse_factor: int
) -> float:
    """``U_ref``: the same with refurbishing at ``reuse_factor``.

    Args:
        outcomes: ``|A|``, outcomes of the full augmentation.
        final_outcomes: ``|A_F|``, outcomes of the final part (at most ``outcomes``).
        epochs: ``k``, epochs of training.
        reuse_factor: ``r``.
    """
    a, a_f, r = outcomes, min(final_outcomes, outcomes), reuse_factor
    if math.isinf(a):
        # |A| -> infinity: every cache refresh is new, each yields U(|A_F|, r) distinct uses.
        return (epochs / r) * _seen(a_f, r)
    fresh = (a_f / a) * _hit(1.0 / a_f, r)
    return a * _hit(fresh, epochs / r)


def paper_diversity(
    outcomes: float, final_outcomes: float, reuse_factor: int, epochs: float | None = None
) -> float:
    """Refurbishing's normalised diversity, ``U_ref / U_std``, from the paper's formula.

    ``final_outcomes == 1`` gives data echoing's figure, ``final_outcomes == outcomes`` and
    ``reuse_factor == 1`` give 1 (standard training).

    Args:
        outcomes: ``|A|`` (``math.inf`` for a continuous augmentation).
        final_outcomes: ``|A_F|`` (``math.inf`` for a continuous final part).
        reuse_factor: ``r``, at least 1.
        epochs: ``k``; default ``r``, one reuse cycle, the unit the measured figure counts.

    Raises:
        ValueError: If an argument is out of range.
    """
    if reuse_factor < 1:
        raise ValueError(f"reuse_factor must be at least 1, got {reuse_factor}")
    if not outcomes >= 1 or not final_outcomes >= 1:
        raise ValueError(f"outcome counts must be at least 1, got {outcomes}, {final_outcomes}")
    k = float(reuse_factor if epochs is None else epochs)
    if reuse_factor == 1 or final_outcomes >= outcomes:
        return 1.0
    return unique_refurbishing(outcomes, final_outcomes, k, reuse_factor) / unique_standard(
        outcomes, k
    )


def estimate_outcomes(distinct: float, draws: int) -> float:
    """``|A|`` such that ``draws`` uniform draws show ``distinct`` outcomes on average.

    Returns ``math.inf`` when (nearly) every draw differed: the transform is continuous, or
    has far more outcomes than ``draws`` can tell apart.

    Raises:
        ValueError: If ``distinct`` is not between 1 and ``draws``.
    """
    if draws < 1 or not 1 <= distinct <= draws:
        raise ValueError(f"expected 1 <= distinct <= draws, got {distinct} of {draws}")
    if distinct >= draws - 0.5:  # below the resolution of ``draws`` draws
        return math.inf
    low, high = 1.0, 2.0
    while _seen(high, draws) < distinct:
        low, high = high, high * 2
    for _ in range(100):
        middle = (low + high) / 2
        if _seen(middle, draws) < distinct:
            low = middle
        else:
            high = middle
    return (low + high) / 2


# -- the measurement --------------------------------------------------------------------------
def fingerprint(value: Any) -> bytes:
    """A digest of ``value``'s type, shape and bytes: equal outputs give equal digests."""
    digest = hashlib.blake2b(digest_size=16)
    _feed(digest, value)
    return digest.digest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        plain = value.detach().cpu().contiguous()
        digest.update(f"T{plain.dtype}{tuple(plain.shape)}".encode())
        digest.update(plain.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray) and not value.dtype.hasobject:
        digest.update(f"A{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, Image.Image):
        digest.update(f"P{value.mode}{value.size}".encode())
        digest.update(value.tobytes())
    elif isinstance(value, (bytes, bytearray)):
        digest.update(b"B" + bytes(value))
    elif isinstance(value, (tuple, list)):
        digest.update(f"L{type(value).__name__}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            digest.update(repr(key).encode())
            _feed(digest, item)
    elif isinstance(value, (int, float, complex, str, bool, type(None), np.generic)):
        digest.update(f"S{type(value).__name__}{value!r}".encode())
    else:
        digest.update(pickle.dumps(value, protocol=5))


def count_distinct(outputs: Iterable[Any]) -> int:
    """How many different values ``outputs`` holds (compared by :func:`fingerprint`)."""
    return len({fingerprint(output) for output in outputs})


def distinct_per_use(fingerprints: Sequence[bytes], reuse_factor: int) -> list[int]:
    """Distinct values in each run of ``reuse_factor`` consecutive fingerprints (whole runs)."""
    r = reuse_factor
    starts = range(0, len(fingerprints) - r + 1, r)
    return [len(set(fingerprints[start : start + r])) for start in starts]


@dataclasses.dataclass(frozen=True)
class SplitDiversity:
    """What the final part of one split yields from a fixed cached sample.

    Attributes:
        split: Number of leading steps in the cached part.
        draws: Uses of each cached sample.
        samples: Cached samples measured.
        distinct: Mean distinct outputs among the ``draws`` uses of a cached sample.
        distinct_in: For each reuse factor ``r``, the mean distinct outputs among ``r`` uses.
        outcomes: Estimated ``|A_F|`` (``math.inf``: every use differed).
    """

    split: int
    draws: int
    samples: int
    distinct: float
    distinct_in: dict[int, float]
    outcomes: float


@dataclasses.dataclass(frozen=True)
class DiversityProfile:
    """Measured diversity of every candidate split.

    Attributes:
        splits: One entry per split point; split 0's final part is the whole pipeline.
    """

    splits: tuple[SplitDiversity, ...]

    def split(self, split: int) -> SplitDiversity:
        """The measurement of split point ``split``.

        Raises:
            KeyError: If that split was not measured.
        """
        for measured in self.splits:
            if measured.split == split:
                return measured
        raise KeyError(f"split {split} was not measured")

    @property
    def standard(self) -> SplitDiversity:
        """The reference: split 0, the whole pipeline on every use."""
        return self.split(0)

    @property
    def outcomes(self) -> float:
        """Estimated ``|A|``, outcomes of the whole pipeline."""
        return self.standard.outcomes

    def measured(self, split: int, reuse_factor: int) -> float:
        """Distinct outputs among ``r`` uses of a cached sample, relative to standard's."""
        if reuse_factor == 1:
            return 1.0
        mine = self.split(split).distinct_in[reuse_factor]
        return min(mine / self.standard.distinct_in[reuse_factor], 1.0)

    def formula(self, split: int, reuse_factor: int) -> float:
        """The paper's normalised diversity with ``|A|`` and ``|A_F|`` as measured."""
        return paper_diversity(self.outcomes, self.split(split).outcomes, reuse_factor)


def measure_diversity(
    dataset: Any,
    pipeline: Pipeline,
    *,
    samples: int = 5,
    draws: int = 60,
    seed: int = 0,
    whole_sample: bool = False,
    reuse_factors: Sequence[int] = REUSE_FACTORS,
) -> DiversityProfile:
    """Count the distinct outputs of every candidate final part on fixed cached samples.

    Split 0 is always measured: it is the reference (standard training).

    Args:
        dataset: The data set (items as the loader sees them).
        pipeline: The full pipeline as steps.
        samples: Items to measure (each gives one cached sample per split).
        draws: Uses of each cached sample; a multiple of every reuse factor wastes none
            (60 suits 1 to 5).
        seed: Seed of the item draw and the transforms' randomness.
        whole_sample: Apply the steps to whole items, as the loader's ``whole_sample``.
        reuse_factors: The ``r`` values to count distinct outputs for.

    Returns:
        The measurements, split by split.

    Raises:
        ValueError: If ``draws`` is smaller than the largest reuse factor.
        ProfileError: If a step fails.
    """
    if draws < max(reuse_factors, default=1):
        raise ValueError(f"draws must be at least the largest reuse factor, got {draws}")
    indices = sample_indices(len(dataset), samples, seed + 1)
    splits = sorted({0, *candidate_splits(pipeline)})
    layout = SampleLayout(whole_sample)
    found: dict[int, list[list[bytes]]] = {k: [] for k in splits}
    with isolated_rng(seed), single_thread():
        for index in indices:
            try:
                item = read_item(dataset, index)
            except Exception as exc:
                raise ProfileError(f"reading item {index} failed: {exc!r}") from exc
            for k in splits:
                partial, final = _parts(pipeline, k)
                cached = _apply(layout, index, item, partial, f"the first {k} steps")
                found[k].append(
                    [
                        fingerprint(_apply(layout, index, copy.deepcopy(cached), final, "final"))
                        for _ in range(draws)
                    ]
                )
    measured = tuple(_summarise(k, found[k], draws, reuse_factors) for k in splits)
    for split in measured:
        logger.info(
            "split %d: %.1f distinct of %d uses (|A_F| ~ %s)",
            split.split,
            split.distinct,
            draws,
            split.outcomes,
        )
    return DiversityProfile(measured)


def _parts(pipeline: Pipeline, split: int) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    if pipeline.fixed_split and split != pipeline.default_split:
        # A (partial, final) pair: split 0 (standard) is still the whole pipeline.
        whole = pipeline.full()
        return (lambda value: value), whole
    return pipeline.split(split)


def _apply(
    layout: SampleLayout, index: int, value: Any, transform: Callable[[Any], Any], what: str
) -> Any:
    try:
        return layout.apply(index, value, transform)
    except Exception as exc:
        raise ProfileError(f"{what} failed on item {index}: {type(exc).__name__}: {exc}") from exc


def _summarise(
    split: int, runs: Sequence[Sequence[bytes]], draws: int, reuse_factors: Sequence[int]
) -> SplitDiversity:
    distinct = statistics.fmean(len(set(run)) for run in runs)
    per_use = {
        r: statistics.fmean(count for run in runs for count in distinct_per_use(run, r))
        for r in reuse_factors
    }
    return SplitDiversity(
        split=split,
        draws=draws,
        samples=len(runs),
        distinct=distinct,
        distinct_in=per_use,
        outcomes=estimate_outcomes(distinct, draws),
    )
