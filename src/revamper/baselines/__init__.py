"""The baselines, and the registry of the kinds of loader the tools compare.

- :mod:`~revamper.baselines.loaders`: :func:`standard_loader` (no cache, the full pipeline on
  every use) and :func:`echoing_loader` (data echoing: the fully augmented sample repeated), both
  built on :class:`~revamper.RevamperLoader` so comparisons are like for like;
- :mod:`~revamper.baselines.variants`: every kind of loader by name (:class:`LoaderVariant`:
  whether it takes r, how to build it, its analytic bound), read by ``revamper bench`` and
  ``revamper experiment``.
"""

from revamper.baselines.loaders import echoing_loader, standard_loader
from revamper.baselines.variants import (
    LoaderVariant,
    loader_of_kind,
    loader_variant,
    loader_variants,
    register_variant,
    variant_names,
)

__all__ = [
    "LoaderVariant",
    "echoing_loader",
    "loader_of_kind",
    "loader_variant",
    "loader_variants",
    "register_variant",
    "standard_loader",
    "variant_names",
]
