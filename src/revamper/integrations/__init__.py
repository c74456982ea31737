"""Helpers for training frameworks; each imports its framework only when used.

- :mod:`revamper.integrations.lightning`: ``RevamperCallback`` keeps the loader's epoch equal
  to the trainer's (exact resume from any checkpoint).

albumentations needs no integration module: see :class:`revamper.transforms.Albumentations`.
Accelerate needs none either (build the loader after ``Accelerator()``, and do not ``prepare``
it); see ``examples/accelerate_train.py``.
"""
