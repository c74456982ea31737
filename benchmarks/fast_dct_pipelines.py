"""The bench's fused pipelines with FFCV's decode precision (libjpeg-turbo's fast IDCT).

``revamper bench`` scenarios take them as ``/module:function`` (with ``benchmarks`` on
``PYTHONPATH``), e.g. ``refurbish:3/fast_dct_pipelines:imagenet`` next to ``limit/...`` of the
same pipeline, so that the cost of the accurate IDCT shows on its own (docs/benchmarks.md,
section 13d). They need simplejpeg (``pip install revamper[jpeg]``).
"""

from __future__ import annotations

from typing import Any

from revamper.fused_crop import FusedDecodeCrop


def imagenet() -> tuple[Any, Any]:
    """Fused decode (fast IDCT) + RandomResizedCrop(224) | flip, RandAugment(2, 9), to-tensor."""
    from torchvision import transforms as T

    final = T.Compose([T.RandomHorizontalFlip(), T.RandAugment(2, 9), T.PILToTensor()])
    return FusedDecodeCrop(224, fast_dct=True), final


def light() -> tuple[Any, Any]:
    """Fused decode (fast IDCT) + RandomResizedCrop(224) | flip, to-tensor: FFCV's work."""
    from torchvision import transforms as T

    return FusedDecodeCrop(224, fast_dct=True), T.Compose(
        [T.RandomHorizontalFlip(), T.PILToTensor()]
    )
