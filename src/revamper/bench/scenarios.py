"""The scenarios the benchmark compares, all built on the same loader machinery.

A scenario is written ``kind`` or ``kind:r`` on the command line. The kinds are the loader
variants of :mod:`revamper.baselines.variants` that run the full or the simplified pipeline (a
new variant registered there is a new scenario here) and the peers:

- ``standard``: no cache, the full pipeline on every use (a plain DataLoader's work);
- ``simplified``: standard with the pipeline's cheaper variant (fewer random operations);
- ``echo:r``: data echoing, the fully augmented sample cached and repeated r times;
- ``refurbish:r``: data refurbishing at reuse factor r;
- ``unbalanced:r``: refurbishing with the cache-aware shuffle turned off (a plain shuffle);
- ``limit``: refurbishing at r -> infinity (the largest r the planner allows): its steady
  epochs are all cache hits, so they measure the final transform, the cache read, the collate
  and the loader's overhead alone, the limit every r approaches ("of limit" in the report);
- ``torch``: a plain ``torch.utils.data.DataLoader`` with the whole pipeline composed into one
  transform (:mod:`revamper.bench.plain`), the baseline of the report's "x torch" ratios;
- ``ffcv`` and ``dali``: other loaders as peers, each with its own fused decode + crop + flip
  pipeline (see :mod:`revamper.bench.peers`); skipped with a one-line message when the library
  is not installed (:meth:`Scenario.missing`).

A caching scenario may name its cache, any registered store kind
(:func:`~revamper.store.store_kinds`), with a suffix, ``refurbish:3@disk`` or
``refurbish:3@memory``, to compare them in one run; without one it uses ``--cache``. ``limit``
takes a cache too (``limit@arena``), and no r.

A revamper or ``torch`` scenario may run a pipeline of its own instead of the run's, named after
a slash (``refurbish:3/light``: refurbishing on the light pipeline next to ``refurbish:3`` on the
run's, in the same run); it then uses that pipeline's default split.

A revamper scenario may end in ``+fused`` (``standard+fused``, ``refurbish:3+fused``) to run the
pipeline with its decode and crop fused (:func:`~revamper.pipelines.fuse_decode_crop`) next to
the same scenario without, so that the gain of the cheaper miss shows on its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from revamper.baselines.variants import (
    LoaderVariant,
    loader_of_kind,
    loader_variant,
    loader_variants,
)
from revamper.bench.peers import PEERS, PeerLoader, crop_size
from revamper.bench.peers import missing as peer_missing
from revamper.bench.plain import PLAIN_KINDS, PlainTorchLoader
from revamper.loader import RevamperLoader
from revamper.pipelines import Pipeline, fused_or_error, load_pipeline
from revamper.store import store_kinds


def _variants() -> tuple[LoaderVariant, ...]:
    """The loader variants the benchmark runs: those on the full or the simplified pipeline."""
    return loader_variants(("full", "simplified"))


CACHING_WITHOUT_R: tuple[str, ...] = ("limit",)
"""Variants that cache although they take no r (their r is fixed), so they take a cache."""


def _kinds() -> tuple[str, ...]:
    return (*(v.name for v in _variants()), *PLAIN_KINDS, *PEERS)


def _accepted() -> str:
    words = [f"{v.name}:R" if v.takes_r else v.name for v in _variants()]
    words += [*PLAIN_KINDS, *PEERS]
    return ", ".join(words[:-1]) + " or " + words[-1]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One configuration to measure.

    Attributes:
        kind: What to run: a loader variant's name
            (:func:`~revamper.baselines.variants.loader_variants`) or a peer's (module docstring).
        reuse_factor: r (1 for ``standard`` and ``simplified``).
        cache: The store kind it names (:func:`~revamper.store.store_kinds`; ``None``: the
            run's default).
        fused: Run the pipeline with decode and crop fused into one step.
        pipeline: A pipeline of its own (:func:`~revamper.pipelines.load_pipeline`'s spec),
            run instead of the run's (``None``: the run's).
    """

    kind: str
    reuse_factor: int = 1
    cache: str | None = None
    fused: bool = False
    pipeline: str | None = None

    @property
    def name(self) -> str:
        """``standard``, ``refurbish-r3``, ``refurbish-r3-disk``, ...: unique within a run."""
        variant = self.variant
        takes_r = variant is not None and variant.takes_r
        name = f"{self.kind}-r{self.reuse_factor}" if takes_r else self.kind
        name = name if self.cache is None else f"{name}-{self.cache}"
        name = name if self.pipeline is None else f"{name}/{self.pipeline}"
        return f"{name}-fused" if self.fused else name

    @property
    def caches(self) -> bool:
        """Whether the scenario uses a cache at all."""
        variant = self.variant
        if variant is None:
            return False
        return variant.name in CACHING_WITHOUT_R or (variant.takes_r and self.reuse_factor > 1)

    @property
    def variant(self) -> LoaderVariant | None:
        """The loader variant it runs (``None`` for a peer or a plain DataLoader)."""
        return None if self.kind in PEERS or self.kind in PLAIN_KINDS else loader_variant(self.kind)

    @property
    def plain(self) -> bool:
        """Whether this is a plain ``torch.utils.data.DataLoader`` (``torch``)."""
        return self.kind in PLAIN_KINDS

    @classmethod
    def parse(cls, spec: str) -> Scenario:
        """Parse ``kind``, ``kind:r`` or ``kind:r@cache``, optionally ``/pipeline`` and ``+fused``.

        Raises:
            ValueError: With a one-line message saying what is accepted.
        """
        text = spec.strip()
        if text.endswith("+fused"):
            plain = cls.parse(text.removesuffix("+fused"))
            if plain.peer:
                raise ValueError(f"scenario {spec!r}: a peer runs its own pipeline, not +fused")
            return dataclasses.replace(plain, fused=True)
        if "/" in text:
            text, _, own = text.partition("/")
            scenario = cls.parse(text)
            if scenario.peer:
                raise ValueError(f"scenario {spec!r}: a peer runs its own pipeline, not /{own}")
            load_pipeline(own)  # raises ValueError naming the built-ins
            return dataclasses.replace(scenario, pipeline=own)
        body, _, cache = text.partition("@")
        if cache and cache not in store_kinds():
            caches = ", ".join(store_kinds())
            raise ValueError(f"scenario {spec!r}: the cache after @ must be one of {caches}")
        kind, _, r_text = body.partition(":")
        if kind not in _kinds():
            raise ValueError(f"unknown scenario {spec!r}: use {_accepted()}")
        if kind in CACHING_WITHOUT_R and not r_text:
            return cls(kind, cache=cache or None)
        if kind in PEERS or kind in PLAIN_KINDS or not loader_variant(kind).takes_r:
            if r_text or cache:
                raise ValueError(f"scenario {kind!r} takes no reuse factor or cache: {spec!r}")
            return cls(kind)
        try:
            r = int(r_text)
        except ValueError:
            raise ValueError(
                f"scenario {spec!r} needs a whole reuse factor, e.g. {kind}:3"
            ) from None
        if r < 1:
            raise ValueError(f"the reuse factor of {spec!r} must be at least 1")
        return cls(kind, r, cache or None)

    def available(self, pipeline: Pipeline) -> bool:
        """Whether ``pipeline`` (or its own) supports this scenario (``simplified`` needs one)."""
        variant = self.variant
        if variant is None or variant.pipeline != "simplified":
            return True
        own = pipeline if self.pipeline is None else load_pipeline(self.pipeline)
        return own.simplified is not None

    @property
    def peer(self) -> bool:
        """Whether this is another library's loader (``ffcv``, ``dali``)."""
        return self.kind in PEERS

    def missing(self) -> str | None:
        """``None`` when the scenario can run here, else one line saying what to install."""
        return peer_missing(self.kind) if self.kind in PEERS else None

    def make_loader(
        self, dataset: Any, pipeline: Pipeline, split: int | None, **loader_kwargs: Any
    ) -> RevamperLoader | PeerLoader | PlainTorchLoader:
        """Build the loader for this scenario.

        Args:
            dataset: The data set (items ``(encoded image, class)``).
            pipeline: The run's full pipeline (unless the scenario names its own).
            split: Steps in the cached part (``None``: the pipeline's default; not applied to
                a pipeline of the scenario's own).
            **loader_kwargs: Passed to the loader (batch size, workers, seed, ...); a peer
                takes the batch size, workers (as threads) and seed, and reads the images
                from ``dataset.root`` (an ``ImageFolder``).
        """
        if self.kind in PEERS:
            return PeerLoader(
                self.kind,
                Path(dataset.root),
                crop_size(pipeline),
                batch_size=loader_kwargs["batch_size"],
                num_workers=loader_kwargs.get("num_workers", 0),
                seed=loader_kwargs.get("seed", 0),
            )
        if self.pipeline is not None:
            pipeline, split = load_pipeline(self.pipeline), None
        if self.fused and not pipeline.name.endswith("-fused"):
            pipeline = fused_or_error(pipeline)
            split = split - 1 if split is not None and split >= 2 else split
        if self.plain:
            return PlainTorchLoader(
                dataset,
                pipeline,
                batch_size=loader_kwargs["batch_size"],
                num_workers=loader_kwargs.get("num_workers", 0),
                seed=loader_kwargs.get("seed", 0),
                persistent_workers=loader_kwargs.get("persistent_workers", False),
                shuffle=loader_kwargs.get("shuffle", True),
            )
        variant = loader_variant(self.kind)
        if variant.pipeline == "simplified":
            parts = pipeline.split_simplified(split)
            if parts is None:
                raise ValueError(f"pipeline {pipeline.name!r} has no simplified variant")
        else:
            parts = pipeline.split(split)
        partial, final = parts
        return loader_of_kind(
            variant.name,
            dataset,
            partial_transform=partial,
            final_transform=final,
            reuse_factor=self.reuse_factor,
            **loader_kwargs,
        )


DEFAULT_SCENARIOS = (
    "standard",
    "simplified",
    "echo:3",
    "refurbish:2",
    "refurbish:3",
    "refurbish:4",
    "unbalanced:3",
)
"""What ``revamper bench`` compares unless told otherwise."""
