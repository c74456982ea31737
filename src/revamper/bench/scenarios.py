"""The scenarios the benchmark compares, all built on the same loader machinery.

A scenario is written ``kind`` or ``kind:r`` on the command line. The kinds are the loader
variants of :mod:`revamper.baselines.variants` that run the full or the simplified pipeline (a
new variant registered there is a new scenario here) and the peers:

- ``standard``: no cache, the full pipeline on every use (a plain DataLoader's work);
- ``simplified``: standard with the pipeline's cheaper variant (fewer random operations);
- ``echo:r``: data echoing, the fully augmented sample cached and repeated r times;
- ``refurbish:r``: data refurbishing at reuse factor r;
- ``unbalanced:r``: refurbishing with the cache-aware shuffle turned off (a plain shuffle);
- ``ffcv`` and ``dali``: other loaders as peers, each with its own fused decode + crop + flip
  pipeline (see :mod:`revamper.bench.peers`); skipped with a one-line message when the library
  is not installed (:meth:`Scenario.missing`).

A caching scenario may name its cache, any registered store kind
(:func:`~revamper.store.store_kinds`), with a suffix, ``refurbish:3@disk`` or
``refurbish:3@memory``, to compare them in one run; without one it uses ``--cache``.

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
from revamper.loader import RevamperLoader
from revamper.pipelines import Pipeline, fused_or_error
from revamper.store import store_kinds


def _variants() -> tuple[LoaderVariant, ...]:
    """The loader variants the benchmark runs: those on the full or the simplified pipeline."""
    return loader_variants(("full", "simplified"))


def _kinds() -> tuple[str, ...]:
    return (*(v.name for v in _variants()), *PEERS)


def _accepted() -> str:
    words = [f"{v.name}:R" if v.takes_r else v.name for v in _variants()] + list(PEERS)
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
    """

    kind: str
    reuse_factor: int = 1
    cache: str | None = None
    fused: bool = False

    @property
    def name(self) -> str:
        """``standard``, ``refurbish-r3``, ``refurbish-r3-disk``, ...: unique within a run."""
        variant = self.variant
        takes_r = variant is not None and variant.takes_r
        name = f"{self.kind}-r{self.reuse_factor}" if takes_r else self.kind
        name = name if self.cache is None else f"{name}-{self.cache}"
        return f"{name}-fused" if self.fused else name

    @property
    def caches(self) -> bool:
        """Whether the scenario uses a cache at all."""
        return self.variant is not None and self.variant.takes_r and self.reuse_factor > 1

    @property
    def variant(self) -> LoaderVariant | None:
        """The loader variant it runs (``None`` for a peer)."""
        return None if self.kind in PEERS else loader_variant(self.kind)

    @classmethod
    def parse(cls, spec: str) -> Scenario:
        """Parse ``kind``, ``kind:r`` or ``kind:r@cache``, each optionally ending in ``+fused``.

        Raises:
            ValueError: With a one-line message saying what is accepted.
        """
        text = spec.strip()
        if text.endswith("+fused"):
            plain = cls.parse(text.removesuffix("+fused"))
            if plain.peer:
                raise ValueError(f"scenario {spec!r}: a peer runs its own pipeline, not +fused")
            return dataclasses.replace(plain, fused=True)
        body, _, cache = text.partition("@")
        if cache and cache not in store_kinds():
            caches = ", ".join(store_kinds())
            raise ValueError(f"scenario {spec!r}: the cache after @ must be one of {caches}")
        kind, _, r_text = body.partition(":")
        if kind not in _kinds():
            raise ValueError(f"unknown scenario {spec!r}: use {_accepted()}")
        if kind in PEERS or not loader_variant(kind).takes_r:
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
        """Whether ``pipeline`` supports this scenario (``simplified`` needs a variant)."""
        variant = self.variant
        if variant is None or variant.pipeline != "simplified":
            return True
        return pipeline.simplified is not None

    @property
    def peer(self) -> bool:
        """Whether this is another library's loader (``ffcv``, ``dali``)."""
        return self.kind in PEERS

    def missing(self) -> str | None:
        """``None`` when the scenario can run here, else one line saying what to install."""
        return peer_missing(self.kind) if self.kind in PEERS else None

    def make_loader(
        self, dataset: Any, pipeline: Pipeline, split: int | None, **loader_kwargs: Any
    ) -> RevamperLoader | PeerLoader:
        """Build the loader for this scenario.

        Args:
            dataset: The data set (items ``(encoded image, class)``).
            pipeline: The full pipeline.
            split: Steps in the cached part (``None``: the pipeline's default).
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
        if self.fused and not pipeline.name.endswith("-fused"):
            pipeline = fused_or_error(pipeline)
            split = split - 1 if split is not None and split >= 2 else split
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
