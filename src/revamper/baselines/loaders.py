"""The two baselines, built from the same machinery so comparisons are like for like.

- :func:`standard_loader`: no cache; the full pipeline (partial then final) runs on every use, as
  in a plain DataLoader. Stage times are still split into partial and final.
- :func:`echoing_loader`: data echoing after augmentation (Choi et al., 2019): the full pipeline
  is the cached part and nothing runs on reuse, so each reuse is an identical copy.
"""

from __future__ import annotations

from typing import Any

from revamper.loader import RevamperLoader
from revamper.loader.layout import Transform
from revamper.transforms import Chain


def standard_loader(
    dataset: Any,
    batch_size: int = 1,
    shuffle: bool = False,
    *,
    partial_transform: Transform | None = None,
    final_transform: Transform | None = None,
    **kwargs: Any,
) -> RevamperLoader:
    """A loader that caches nothing and runs both parts of the pipeline on every use.

    Args:
        dataset: As for :class:`RevamperLoader`.
        batch_size: As for :class:`RevamperLoader`.
        shuffle: As for :class:`RevamperLoader`.
        partial_transform: First part of the pipeline (timed as ``cpu_partial``).
        final_transform: Last part of the pipeline (timed as ``cpu_final``).
        **kwargs: Any other :class:`RevamperLoader` argument except ``reuse_factor``.
    """
    if "reuse_factor" in kwargs:
        raise TypeError("standard_loader caches nothing: it takes no reuse_factor")
    return RevamperLoader(
        dataset,
        batch_size,
        shuffle,
        partial_transform=partial_transform,
        final_transform=final_transform,
        reuse_factor=1,
        **kwargs,
    )


def echoing_loader(
    dataset: Any,
    batch_size: int = 1,
    shuffle: bool = False,
    *,
    partial_transform: Transform | None = None,
    final_transform: Transform | None = None,
    reuse_factor: int = 3,
    **kwargs: Any,
) -> RevamperLoader:
    """A loader that caches fully augmented samples and repeats each ``reuse_factor`` times.

    Args:
        dataset: As for :class:`RevamperLoader`.
        batch_size: As for :class:`RevamperLoader`.
        shuffle: As for :class:`RevamperLoader`.
        partial_transform: First part of the pipeline.
        final_transform: Last part of the pipeline; with echoing it is cached too.
        reuse_factor: Uses of each fully augmented sample.
        **kwargs: Any other :class:`RevamperLoader` argument.
    """
    return RevamperLoader(
        dataset,
        batch_size,
        shuffle,
        partial_transform=Chain(partial_transform, final_transform),
        final_transform=None,
        reuse_factor=reuse_factor,
        **kwargs,
    )


__all__ = ["echoing_loader", "standard_loader"]
