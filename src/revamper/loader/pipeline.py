""":meth:`RevamperLoader.from_pipeline`'s choice of split point and reuse factor, as a port.

Choosing needs the tuner (it profiles the pipeline), and the runtime core never imports a tool.
So the loader only defines what a chooser is (:data:`PipelineChooser`) and asks the one plugged
in with :func:`use_pipeline_chooser`; the ``revamper`` package plugs in the tuner's
(:func:`revamper.tune.tuned_loader.choose_pipeline`) when it is imported, which every import of
``revamper.loader`` does first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from revamper.loader.layout import Transform

__all__ = ["PipelineChooser", "choose_pipeline", "use_pipeline_chooser"]

PipelineChooser = Callable[
    [Any, Any, int | None, float, Mapping[str, Any]], tuple[Transform, Transform, int]
]
"""``chooser(dataset, transforms, cache_bytes, min_diversity, loader_kwargs)`` returns
``(partial, final, reuse_factor)``; all ranks of a process group must get the same answer."""

_chooser: list[PipelineChooser] = []


def use_pipeline_chooser(chooser: PipelineChooser) -> None:
    """Make ``chooser`` the one :meth:`RevamperLoader.from_pipeline` asks (replacing any)."""
    _chooser[:] = [chooser]


def choose_pipeline(
    dataset: Any,
    transforms: Any,
    cache_bytes: int | None,
    min_diversity: float,
    loader_kwargs: Mapping[str, Any],
) -> tuple[Transform, Transform, int]:
    """Ask the plugged-in chooser for ``(partial, final, reuse_factor)``.

    Raises:
        RuntimeError: If no chooser is plugged in (only when ``revamper`` failed to import).
    """
    if not _chooser:
        raise RuntimeError(
            "RevamperLoader.from_pipeline needs the tuner: import revamper (which plugs in "
            "revamper.tune's chooser) or call revamper.tune.tuned_loader"
        )
    return _chooser[0](dataset, transforms, cache_bytes, min_diversity, loader_kwargs)
