""":meth:`RevamperLoader.from_pipeline`'s choice: where to split a pipeline, and the reuse factor.

The tuner (:mod:`revamper.tune`) is imported only when this runs: the runtime core does not
depend on the tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from revamper.loader.arguments import process_group_size
from revamper.loader.layout import Transform


def choose_pipeline(
    dataset: Any,
    transforms: Any,
    cache_bytes: int | None,
    min_diversity: float,
    loader_kwargs: Mapping[str, Any],
) -> tuple[Transform, Transform, int]:
    """Profile ``transforms`` on ``dataset`` and return ``(partial, final, reuse_factor)``.

    Under ``torch.distributed`` rank 0 measures and chooses and the other ranks take its choice
    (a collective), so that all ranks agree.

    Raises:
        TypeError: If ``loader_kwargs`` holds an argument the choice sets itself.
    """
    from revamper.tune import as_pipeline, recommend

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
