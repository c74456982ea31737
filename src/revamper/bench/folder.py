"""Moved to :mod:`revamper.datasets.folder`; re-exported here so old imports keep working."""

from revamper.datasets.folder import *  # noqa: F403
from revamper.datasets.folder import __all__ as __all__
