"""Moved to :mod:`revamper.datasets.builtin`; re-exported here so old imports keep working."""

from revamper.datasets.builtin import *  # noqa: F403
from revamper.datasets.builtin import __all__ as __all__
