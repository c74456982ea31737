"""A loader whose split point and reuse factor the tuner chose (``from_pipeline``'s tuner side).

The loader does not import the tuner (the runtime core never imports a tool): it asks the
chooser that :mod:`revamper` plugs in (:func:`revamper.loader.pipeline.use_pipeline_chooser`),
which is :func:`choose_pipeline` here. :func:`tuned_loader` is the same thing spelled from this
side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from revamper.loader import RevamperLoader
from revamper.loader.arguments import process_group_size
from revamper.loader.layout import Transform
from revamper.tune.recommend import recommend
from revamper.tune.steps import as_pipeline

__all__ = ["choose_pipeline", "tuned_loader"]


def choose_pipeline(
    dataset: Any,
    transforms: Any,
    cache_bytes: int | None,
    min_diversity: float,
    loader_kwargs: Mapping[str, Any],
) -> tuple[Transform, Transform, int]:
    """Profile ``transforms`` on ``dataset`` and return ``(partial, final, reuse_factor)``.

    The choice is :func:`~revamper.tune.recommend`'s. Under ``torch.distributed`` rank 0
    measures and chooses and the other ranks take its choice (a collective), so that all ranks
    agree.

    Raises:
        TypeError: If ``loader_kwargs`` holds an argument the choice sets itself.
    """
    for name in ("partial_transform", "final_transform", "reuse_factor"):
        if name in loader_kwargs:
            raise TypeError(f"from_pipeline chooses {name} itself; do not pass it")
    shared = process_group_size() > 1 and loader_kwargs.get("world_size") is None
    chosen: list[Any] = [None]
    if not shared or torch.distributed.get_rank() == 0:
        choice = recommend(
            dataset,
            transforms,
            budget_bytes=cache_bytes,
            min_diversity=min_diversity,
            num_workers=loader_kwargs.get("num_workers", 0),
            batch_size=loader_kwargs.get("batch_size", 1),
            whole_sample=loader_kwargs.get("whole_sample", False),
            collate_fn=loader_kwargs.get("collate_fn"),
            multiprocessing_context=loader_kwargs.get("multiprocessing_context"),
        )
        chosen = [(choice.split, choice.reuse_factor)]
    if shared:
        torch.distributed.broadcast_object_list(chosen, src=0)
    split, reuse_factor = chosen[0]
    partial, final = as_pipeline(transforms).split(split)
    return partial, final, int(reuse_factor)


def tuned_loader(
    dataset: Any,
    transforms: Any,
    *,
    cache_bytes: int | None = None,
    min_diversity: float = 0.9,
    **loader_kwargs: Any,
) -> RevamperLoader:
    """:meth:`RevamperLoader.from_pipeline <revamper.loader.RevamperLoader.from_pipeline>`.

    Args:
        dataset: As for :class:`~revamper.RevamperLoader`.
        transforms: The full augmentation pipeline: a list of callables or a torchvision
            ``Compose`` (one opaque callable cannot be split).
        cache_bytes: Memory budget for the cache (also the constraint of the choice).
        min_diversity: Lowest acceptable diversity, as a fraction of standard training's.
        **loader_kwargs: Any other loader argument except the transforms and ``reuse_factor``.
    """
    partial, final, reuse_factor = choose_pipeline(
        dataset, transforms, cache_bytes, min_diversity, loader_kwargs
    )
    return RevamperLoader(
        dataset,
        partial_transform=partial,
        final_transform=final,
        reuse_factor=reuse_factor,
        cache_bytes=cache_bytes,
        **loader_kwargs,
    )
