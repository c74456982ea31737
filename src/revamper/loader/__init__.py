"""The loader: a sampler that carries the plan, a data set wrapper that executes it, and the glue.

- :class:`RevamperLoader`: the public, DataLoader-like entry point.
- :class:`~revamper.loader.stats.EpochStats`: what each epoch counted and timed.
"""

from revamper.loader.epoch import EpochIterator
from revamper.loader.loader import RevamperLoader
from revamper.loader.stats import BatchStats, EpochStats, LoaderStats
from revamper.loader.tickets import BatchTicket

__all__ = [
    "BatchStats",
    "BatchTicket",
    "EpochIterator",
    "EpochStats",
    "LoaderStats",
    "RevamperLoader",
]
