"""The loader: a sampler that carries the plan, a data set wrapper that executes it, and the glue.

- :class:`RevamperLoader`: the public, DataLoader-like entry point.
- :class:`~revamper.loader.stats.EpochStats`: what each epoch counted and timed.
- :class:`~revamper.loader.reuse_control.ReuseControl`: the settings of
  ``reuse_factor="auto"`` (the loader's choice of r at every epoch boundary).
"""

from revamper.loader.epoch import EpochIterator
from revamper.loader.loader import RevamperLoader
from revamper.loader.reuse_control import ReuseControl
from revamper.loader.stats import BatchStats, EpochStats, LoaderStats
from revamper.loader.tickets import BatchTicket

__all__ = [
    "BatchStats",
    "BatchTicket",
    "EpochIterator",
    "EpochStats",
    "LoaderStats",
    "ReuseControl",
    "RevamperLoader",
]
