"""The per-sample CPU cost model of DESIGN.md section 3, and the speed-up bound it implies.

Per sample: ``load`` (read the item), ``partial`` and ``final`` (the two parts of the
augmentation), ``get``/``put`` (cache read and write, decoding and encoding included) and
``collate``. Then:

- standard: ``load + partial + final + collate``;
- refurbishing at r, steady state: ``(load + partial + put) / r + (1 - 1/r) get + final + collate``;
- data echoing at r is refurbishing with the whole pipeline as the partial part.

When the CPU is the bottleneck, throughput is inversely proportional to that cost, so the ratio
of the two costs is the bound on the loader's speed-up. Costs are CPU seconds per sample,
measured by the loader's own per-stage timers (:class:`~revamper.loader.stats.EpochStats`).
"""

from __future__ import annotations

import dataclasses

from revamper.loader.stats import BatchStats


@dataclasses.dataclass(frozen=True)
class StageCosts:
    """CPU seconds per sample of each stage.

    Attributes:
        load: Reading the item from the data set.
        partial: The partial (cached) transform.
        final: The final transform.
        collate: Collation, per sample.
        get: One cache read (hit), decoding included.
        put: One cache write, encoding included.
    """

    load: float
    partial: float
    final: float
    collate: float
    get: float = 0.0
    put: float = 0.0

    @classmethod
    def from_stats(cls, stats: BatchStats) -> StageCosts:
        """Per-sample costs from a loader's counts and CPU times.

        Transform and load costs are divided by the samples that ran them (misses for load and
        partial, all samples for final and collate), cache costs by reads and writes.
        """
        misses = max(stats.misses, 1)
        samples = max(stats.samples, 1)
        return cls(
            load=stats.cpu_load / misses,
            partial=stats.cpu_partial / misses,
            final=stats.cpu_final / samples,
            collate=stats.cpu_collate / samples,
            get=stats.cpu_cache_read / stats.cache_reads if stats.cache_reads else 0.0,
            put=stats.cpu_cache_write / stats.cache_writes if stats.cache_writes else 0.0,
        )

    def with_cache_costs(self, other: StageCosts) -> StageCosts:
        """These stage costs with ``other``'s cache read and write costs."""
        return dataclasses.replace(self, get=other.get, put=other.put)

    def standard(self) -> float:
        """CPU seconds per sample without a cache."""
        return self.load + self.partial + self.final + self.collate

    def refurbishing(self, reuse_factor: int) -> float:
        """CPU seconds per sample in steady state at ``reuse_factor``."""
        r = reuse_factor
        if r < 1:
            raise ValueError(f"reuse_factor must be >= 1, got {r}")
        if r == 1:
            return self.standard()
        return (
            (self.load + self.partial + self.put) / r
            + (1 - 1 / r) * self.get
            + self.final
            + self.collate
        )

    def echoing(self, reuse_factor: int) -> float:
        """CPU seconds per sample with data echoing at ``reuse_factor``."""
        merged = dataclasses.replace(self, partial=self.partial + self.final, final=0.0)
        return merged.refurbishing(reuse_factor)

    def refurbishing_bound(self, reuse_factor: int) -> float:
        """Upper bound on refurbishing's speed-up over standard when the CPU is the limit."""
        return self.standard() / self.refurbishing(reuse_factor)

    def echoing_bound(self, reuse_factor: int) -> float:
        """Upper bound on echoing's speed-up over standard when the CPU is the limit."""
        return self.standard() / self.echoing(reuse_factor)
