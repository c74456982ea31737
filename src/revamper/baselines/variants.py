"""The kinds of loader that the benchmark and the experiments compare, by name, in one registry.

A :class:`LoaderVariant` says everything a tool needs to know about one way of loading: its
name, whether it takes a reuse factor r, which pipeline it runs (the full one, the cheaper
``simplified`` one, or ``none``), how to build its loader from the two parts of the pipeline,
its analytic speed-up bound over standard from measured stage costs, and the paper's expected
diversity (:mod:`revamper.baselines.versions`). ``revamper bench``'s
scenarios and ``revamper experiment``'s arms are both read from here, so a new variant is one
:func:`register_variant` call below and both tools accept it (the benchmark offers the variants
whose pipeline is ``full`` or ``simplified``; the experiments offer all of them).

Every variant is built on :class:`~revamper.RevamperLoader` through the baselines, with the
caller's batch size, workers and seed, so variants differ only in what is cached and reused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

from revamper.baselines import versions as paper
from revamper.baselines.loaders import echoing_loader, standard_loader
from revamper.costmodel import StageCosts
from revamper.loader import RevamperLoader
from revamper.loader.layout import Transform
from revamper.plan.limits import MAX_REUSE_FACTOR

__all__ = [
    "LoaderVariant",
    "PipelinePart",
    "loader_of_kind",
    "loader_variant",
    "loader_variants",
    "register_variant",
    "variant_names",
]

PipelinePart = Literal["full", "simplified", "none"]
"""Which pipeline a variant runs: the whole one, its cheaper variant, or only the conversion."""

Build = Callable[..., RevamperLoader]
"""``build(dataset, *, partial_transform, final_transform, reuse_factor, **loader_kwargs)``."""

Versions = Callable[[float, float, float, float], float]
"""``versions(r, k, final_outcomes, full_outcomes)``: the paper's expected distinct versions of
one sample over k epochs (:mod:`revamper.baselines.versions`)."""


@dataclasses.dataclass(frozen=True)
class LoaderVariant:
    """One way of loading that the tools compare.

    Attributes:
        name: The registry name (``standard``, ``refurbish``, ...); with r, a run names it
            ``<name>-r<r>``.
        summary: One line saying what it does (the tools' help and module docs).
        takes_r: Whether it caches and so takes a reuse factor (``name:r`` on a command line).
        pipeline: Which pipeline it runs (:data:`PipelinePart`).
        build: Builds its loader from the pipeline's two parts (see :data:`Build`).
        bound: Its analytic speed-up bound over standard, from stage costs and r (``None``: none
            from the same costs, e.g. a variant that runs another pipeline).
        loader_options: Loader arguments the variant fixes (e.g. ``balance_misses=False``).
        versions: Its expected diversity by the paper's formula (:data:`Versions`; ``None``:
            none).
    """

    name: str
    summary: str
    takes_r: bool
    build: Build
    pipeline: PipelinePart = "full"
    bound: Callable[[StageCosts, int], float] | None = None
    loader_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    versions: Versions | None = None

    def make_loader(
        self,
        dataset: Any,
        *,
        partial_transform: Transform | None,
        final_transform: Transform | None,
        reuse_factor: int = 1,
        **loader_kwargs: Any,
    ) -> RevamperLoader:
        """Build this variant's loader (``reuse_factor`` is ignored unless :attr:`takes_r`)."""
        return self.build(
            dataset,
            partial_transform=partial_transform,
            final_transform=final_transform,
            reuse_factor=reuse_factor if self.takes_r else 1,
            **{**loader_kwargs, **self.loader_options},
        )

    def speed_bound(self, costs: StageCosts, reuse_factor: int) -> float | None:
        """The analytic bound at ``reuse_factor`` from ``costs``, or ``None`` if it has none."""
        return None if self.bound is None else self.bound(costs, reuse_factor)

    @property
    def balances_misses(self) -> bool:
        """Whether its batches get the cache-aware shuffle (the loader's default)."""
        return bool(self.loader_options.get("balance_misses", True))


_VARIANTS: dict[str, LoaderVariant] = {}


def register_variant(variant: LoaderVariant) -> LoaderVariant:
    """Add ``variant`` to the registry and return it.

    Raises:
        ValueError: If a variant of that name is registered already.
    """
    if variant.name in _VARIANTS:
        raise ValueError(f"a loader variant named {variant.name!r} is registered already")
    _VARIANTS[variant.name] = variant
    return variant


def loader_variants(pipelines: tuple[PipelinePart, ...] | None = None) -> tuple[LoaderVariant, ...]:
    """The registered variants in registration order, only those running ``pipelines`` if given."""
    return tuple(v for v in _VARIANTS.values() if pipelines is None or v.pipeline in pipelines)


def variant_names(pipelines: tuple[PipelinePart, ...] | None = None) -> tuple[str, ...]:
    """The names of :func:`loader_variants`."""
    return tuple(v.name for v in loader_variants(pipelines))


def loader_variant(name: str) -> LoaderVariant:
    """The variant registered as ``name``.

    Raises:
        ValueError: Naming the known variants, for an unknown one.
    """
    try:
        return _VARIANTS[name]
    except KeyError:
        known = ", ".join(_VARIANTS)
        raise ValueError(f"unknown loader variant {name!r}: known are {known}") from None


def loader_of_kind(
    kind: str,
    dataset: Any,
    *,
    partial_transform: Transform | None,
    final_transform: Transform | None,
    reuse_factor: int,
    **kwargs: Any,
) -> RevamperLoader:
    """The loader of the variant registered as ``kind`` (:meth:`LoaderVariant.make_loader`).

    Raises:
        ValueError: For an unknown kind.
    """
    return loader_variant(kind).make_loader(
        dataset,
        partial_transform=partial_transform,
        final_transform=final_transform,
        reuse_factor=reuse_factor,
        **kwargs,
    )


def _standard(dataset: Any, *, reuse_factor: int, **kwargs: Any) -> RevamperLoader:
    del reuse_factor  # standard caches nothing
    return standard_loader(dataset, **kwargs)


def _refurbish(dataset: Any, **kwargs: Any) -> RevamperLoader:
    return RevamperLoader(dataset, **kwargs)


def _auto(dataset: Any, *, reuse_factor: int, **kwargs: Any) -> RevamperLoader:
    # r is the bound R here: the loader chooses each epoch's r up to it.
    return RevamperLoader(dataset, reuse_factor="auto", max_reuse_factor=reuse_factor, **kwargs)


def _no_gain(costs: StageCosts, reuse_factor: int) -> float:
    del costs, reuse_factor
    return 1.0


def _refurbishing_bound(costs: StageCosts, reuse_factor: int) -> float:
    return costs.refurbishing_bound(reuse_factor)


def _echoing_bound(costs: StageCosts, reuse_factor: int) -> float:
    return costs.echoing_bound(reuse_factor)


register_variant(
    LoaderVariant(
        "none",
        "no augmentation (only the conversion to the model's input), nothing cached",
        takes_r=False,
        build=_standard,
        pipeline="none",
        versions=paper.no_augmentation_versions,
    )
)
register_variant(
    LoaderVariant(
        "standard",
        "no cache, the full pipeline on every use (a plain DataLoader's work)",
        takes_r=False,
        build=_standard,
        bound=_no_gain,
        versions=paper.standard_versions,
    )
)
register_variant(
    LoaderVariant(
        "simplified",
        "standard with the pipeline's cheaper variant (fewer random operations)",
        takes_r=False,
        build=_standard,
        pipeline="simplified",
        versions=paper.standard_versions,
    )
)
register_variant(
    LoaderVariant(
        "echo",
        "data echoing: the fully augmented sample cached and repeated r times",
        takes_r=True,
        build=echoing_loader,
        bound=_echoing_bound,
        versions=paper.echoing_versions,
    )
)
register_variant(
    LoaderVariant(
        "refurbish",
        "data refurbishing: the partial part cached and reused r times, the final part re-run",
        takes_r=True,
        build=_refurbish,
        bound=_refurbishing_bound,
        versions=paper.refurbishing_versions,
    )
)
register_variant(
    LoaderVariant(
        "unbalanced",
        "refurbishing with the cache-aware shuffle turned off (a plain shuffle)",
        takes_r=True,
        build=_refurbish,
        bound=_refurbishing_bound,
        loader_options={"balance_misses": False},
        versions=paper.refurbishing_versions,  # the shuffle does not change what is reused
    )
)
register_variant(
    LoaderVariant(
        "auto",
        "refurbishing with reuse_factor='auto': each epoch's r (up to R, written auto:R) chosen "
        "from what the epoch before measured",
        takes_r=True,
        build=_auto,
    )
)


def _limit(dataset: Any, *, reuse_factor: int, **kwargs: Any) -> RevamperLoader:
    # The largest r the planner allows: after epoch 0, an epoch recomputes one chunk of
    # num_samples / 65535 samples, i.e. at most one sample (none for most epochs).
    del reuse_factor  # fixed: the limit r -> infinity
    return RevamperLoader(dataset, reuse_factor=LIMIT_REUSE_FACTOR, **kwargs)


def _limit_bound(costs: StageCosts, reuse_factor: int) -> float:
    del reuse_factor
    return costs.refurbishing_bound(LIMIT_REUSE_FACTOR)


def _limit_versions(r: float, k: float, final: float, full: float) -> float:
    # One partial augmentation per run, reused with k fresh final ones.
    del r
    return paper.refurbishing_versions(max(k, 1.0), k, final, full)


LIMIT_REUSE_FACTOR = MAX_REUSE_FACTOR
"""The reuse factor of the ``limit`` variant: the largest the planner allows."""

register_variant(
    LoaderVariant(
        "limit",
        "refurbishing at r -> infinity (the largest r the planner allows): after epoch 0 every "
        "use is a cache hit, so the steady state is the final transform, the cache read, the "
        "collate and the loader's overhead alone, the bound every reuse factor approaches",
        takes_r=False,
        build=_limit,
        bound=_limit_bound,
        versions=_limit_versions,
    )
)
