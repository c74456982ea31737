"""Fused JPEG decode + RandomResizedCrop: decode only at the resolution the crop needs.

The plain miss path decodes the whole JPEG at full resolution, then crops a random region and
resizes it to the output size. :class:`FusedDecodeCrop` does the same work in a cheaper order:

1. read the image's size from the JPEG header (``Image.open`` is lazy: no pixel is decoded);
2. draw the crop with torchvision's own ``RandomResizedCrop.get_params`` on a size-only stand-in
   tensor, so the distribution (scale, ratio, the 10-try rejection loop, the central fallback)
   and the draws from torch's global RNG are those of ``RandomResizedCrop`` by construction;
3. decode at the smallest DCT scale (1/8, 1/4, 1/2) that still leaves the crop at least the
   output size on both sides (libjpeg scales inside the IDCT, via Pillow's ``Image.draft``);
4. crop (coordinates divided by the scale, sub-pixel exact) and resize to the output size with
   the same interpolation as ``RandomResizedCrop`` (bilinear, antialiased).

Where no DCT scale fits (the crop is less than twice the output size on a side, as for every
224 px crop of a 500x375 photo) the decode is at full resolution and the resize is the cost to
cut. With ``resize="torch"`` (the default) an RGB crop is resized by torch's antialiased uint8
interpolation on a channels-last view of the pixels, exactly what
``torchvision.transforms.v2.RandomResizedCrop`` does to a uint8 tensor: about 3x faster than
Pillow's resize, and within 2 grey levels of it (PSNR 55 dB or more; docs/benchmarks.md,
section 9b). Where ``simplejpeg`` is installed (``pip install revamper[jpeg]``) it decodes such
a JPEG straight into the array the resize reads, with the same libjpeg-turbo settings as Pillow
(the same pixels), which saves Pillow's two copies of the decoded image. ``resize="pil"`` keeps
Pillow's resize: a crop decoded at full resolution is then *identical* to ``Decode`` +
``RandomResizedCrop`` (a DCT-scaled one never is: that is the point of the step). Other
inputs (PNG bytes, decoded PIL images) take that plain path, with the same draws, and the torch
resize where it applies.
"""

from __future__ import annotations

import functools
import io
import numbers
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image

_DCT_SCALES = (8, 4, 2)
"""The denominators libjpeg's IDCT can scale by through Pillow, largest first."""

RESIZES = ("torch", "pil")
"""How :class:`FusedDecodeCrop` resizes a full-resolution crop (see the module)."""

DECODERS = ("auto", "pillow", "simplejpeg")
"""Which library decodes a full-resolution JPEG for the torch resize (``auto``: simplejpeg
where it is installed, else Pillow)."""


def dct_scale(crop: tuple[int, int], output: tuple[int, int]) -> int:
    """The largest DCT scale denominator whose scaled crop still covers the output.

    Args:
        crop: The crop's ``(width, height)`` in full-resolution pixels.
        output: The output's ``(width, height)``.

    Returns:
        8, 4 or 2 when the crop divided by it is at least the output on both sides, else 1.
    """
    for scale in _DCT_SCALES:
        if crop[0] >= scale * output[0] and crop[1] >= scale * output[1]:
            return scale
    return 1


def draft_request(size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The size to ask ``Image.draft`` for so that Pillow decodes at exactly ``1/scale``.

    Pillow picks the largest of 8, 4, 2, 1 not above ``min(W // w, H // h)`` for a request of
    ``(w, h)``; asking for ``(W // scale, H // scale)`` makes that minimum exactly ``scale``
    whenever ``W, H >= scale`` (writing ``W = q * scale + r``, ``W // q >= 2 * scale`` would
    need ``r >= q * scale``, impossible for ``q >= 1``).
    """
    return max(size[0] // scale, 1), max(size[1] // scale, 1)


def _size_only(width: int, height: int) -> torch.Tensor:
    """A tensor of shape ``(1, height, width)`` holding one element: all ``get_params`` reads."""
    return torch.empty(1, 1, 1).expand(1, height, width)


class FusedDecodeCrop:
    """Decode encoded image bytes and take a RandomResizedCrop of them, decoding only what it needs.

    A drop-in for ``[Decode(mode), torchvision.transforms.RandomResizedCrop(size, ...)]`` with
    the same arguments, the same crop distribution and the same draws from torch's global RNG
    (so a loader's per-worker seeding applies as it does to torchvision's transforms). The crop
    is drawn once the header is read, so a file that then fails to decode has made its draw
    (``Decode`` fails before ``RandomResizedCrop`` draws). It is a plain object of numbers and
    strings, so it pickles into DataLoader workers.

    Args:
        size: Output size: an int (square) or ``(height, width)``, as torchvision takes it.
        scale: Range of the crop's area as a fraction of the image's.
        ratio: Range of the crop's aspect ratio (width / height).
        mode: PIL mode of the result (``"RGB"`` by default).
        interpolation: A torchvision ``InterpolationMode``, or its int or PIL ``Resampling``
            value, as ``RandomResizedCrop`` takes it (bilinear by default).
        resize: ``"torch"``: resize RGB crops with torch's antialiased uint8 interpolation
            (bilinear only; within 2 grey levels of Pillow, several times faster); ``"pil"``:
            Pillow's resize, identical to ``Decode`` + ``RandomResizedCrop`` wherever the
            decode is at full resolution.
        decoder: Which library decodes a full-resolution RGB JPEG for the torch resize:
            ``"simplejpeg"`` (``pip install revamper[jpeg]``), ``"pillow"``, or ``"auto"``
            (simplejpeg where installed). Both give the same pixels, so a step unpickled
            where simplejpeg is missing decodes with Pillow rather than failing.

    Raises:
        ValueError: If an argument is out of its range or ``resize``/``decoder`` is unknown.
        ImportError: If ``decoder="simplejpeg"`` and simplejpeg is not installed.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        mode: str = "RGB",
        interpolation: Any = None,
        resize: str = "torch",
        decoder: str = "auto",
    ) -> None:
        from torchvision.transforms import InterpolationMode

        height, width = _output_size(size)
        if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(
                f"scale and ratio must be increasing positive ranges: {scale}, {ratio}"
            )
        self.size = (height, width)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        if decoder == "simplejpeg" and simplejpeg_module() is None:
            raise ImportError(
                "FusedDecodeCrop(decoder='simplejpeg') needs simplejpeg: pip install "
                "revamper[jpeg] (or pass decoder='auto' to fall back to Pillow)"
            )
        self.mode = mode
        self.interpolation = _interpolation_mode(
            InterpolationMode.BILINEAR if interpolation is None else interpolation
        )
        self.resize = resize
        self.decoder = decoder

    def params(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Draw ``(top, left, height, width)`` of a crop of a ``width`` x ``height`` image.

        ``RandomResizedCrop.get_params`` itself, given a stand-in of that size, so that the
        draws from torch's global RNG are the same ones in the same order.
        """
        from torchvision.transforms import RandomResizedCrop

        drawn: tuple[int, int, int, int] = RandomResizedCrop.get_params(
            _size_only(width, height), list(self.scale), list(self.ratio)
        )
        return drawn

    def __call__(self, data: bytes | Image.Image) -> Image.Image:
        """Decode ``data`` (bytes, or a PIL image that passes to the plain path) and crop it."""
        if isinstance(data, Image.Image):
            return self._plain(data if data.mode == self.mode else data.convert(self.mode))
        image: Image.Image = Image.open(io.BytesIO(data))
        if image.format != "JPEG":
            return self._plain(image.convert(self.mode) if image.mode != self.mode else image)
        width, height = image.size
        top, left, crop_h, crop_w = self.params(width, height)
        out_h, out_w = self.size
        scale = dct_scale((crop_w, crop_h), (out_w, out_h))
        if scale > 1:
            drafted = image.draft(None, draft_request((width, height), scale))
            scale = 1 if drafted is None else round(width / drafted[1][2])
        if scale == 1 and self._torch_resize() and image.mode == "RGB" == self.mode:
            pixels = self._decoded_array(data)
            if pixels is not None and pixels.shape == (height, width, 3):
                return self._torch_resized_crop(pixels[top : top + crop_h, left : left + crop_w])
        if image.mode != self.mode:
            image = image.convert(self.mode)
        if scale == 1:
            return self._resized_crop(_loaded(image), top, left, crop_h, crop_w)
        box = (left / scale, top / scale, (left + crop_w) / scale, (top + crop_h) / scale)
        return image.resize((out_w, out_h), self._pil_filter(), box=box)

    def _plain(self, image: Image.Image) -> Image.Image:
        """Decoded already (or not a JPEG): ``RandomResizedCrop`` on the full image."""
        top, left, crop_h, crop_w = self.params(*image.size)
        return self._resized_crop(_loaded(image), top, left, crop_h, crop_w)

    def _resized_crop(
        self, image: Image.Image, top: int, left: int, height: int, width: int
    ) -> Image.Image:
        if self._torch_resize() and image.mode == "RGB":
            region = image.crop((left, top, left + width, top + height))
            return self._torch_resized_crop(np.array(region))  # a writable copy
        from torchvision.transforms import functional as F

        result: Image.Image = F.resized_crop(
            image, top, left, height, width, list(self.size), self.interpolation, antialias=True
        )
        return result

    def _torch_resize(self) -> bool:
        """Whether crops at full resolution go through torch's resize (RGB, bilinear)."""
        from torchvision.transforms import InterpolationMode

        return self.resize == "torch" and self.interpolation == InterpolationMode.BILINEAR

    def _decoded_array(self, data: bytes) -> np.ndarray[Any, np.dtype[np.uint8]] | None:
        """The JPEG's RGB pixels decoded by simplejpeg, or ``None`` (Pillow decodes instead).

        ``None`` also for data simplejpeg refuses, so that a damaged file fails (or decodes)
        exactly as it does with Pillow.
        """
        module = None if self.decoder == "pillow" else simplejpeg_module()
        if module is None:
            return None
        try:
            pixels: np.ndarray[Any, np.dtype[np.uint8]] = module.decode_jpeg(data, colorspace="RGB")
        except (ValueError, OSError):
            return None
        return pixels

    def _torch_resized_crop(self, region: np.ndarray[Any, Any]) -> Image.Image:
        """Resize a writable ``(h, w, 3)`` uint8 crop to the output size, as torchvision v2 does.

        The channels-last view is what torch's vectorised uint8 antialiased kernel reads; the
        result comes back as three planes that Pillow interleaves into an RGB image.
        """
        out_h, out_w = self.size
        pixels = torch.from_numpy(region).permute(2, 0, 1).unsqueeze(0)
        resized = torch.nn.functional.interpolate(
            pixels, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False
        )
        planes = [
            Image.frombuffer(
                "L", (out_w, out_h), resized[0, c].contiguous().numpy(), "raw", "L", 0, 1
            )
            for c in range(3)
        ]
        return Image.merge("RGB", planes)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A step pickled before ``resize`` and ``decoder`` existed resized with Pillow; one
        # pickled before the interpolation was normalised may hold an int.
        self.__dict__.update({"resize": "pil", "decoder": "pillow", **state})
        self.interpolation = _interpolation_mode(self.interpolation)

    def _pil_filter(self) -> Image.Resampling:
        from torchvision.transforms.functional import pil_modes_mapping

        return Image.Resampling(pil_modes_mapping[self.interpolation])

    def __repr__(self) -> str:
        return (
            f"FusedDecodeCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
            f"mode={self.mode!r}, "
            f"interpolation={self.interpolation.value}, resize={self.resize!r}, "
            f"decoder={self.decoder!r})"
        )


def _loaded(image: Image.Image) -> Image.Image:
    image.load()
    return image


def _output_size(size: Any) -> tuple[int, int]:
    """``(height, width)`` from a size as torchvision's ``RandomResizedCrop`` takes it.

    A number is a square side; a sequence holds one side (square) or ``(height, width)``.

    Raises:
        ValueError: If the sequence has another length or a side is not positive.
    """
    given: Any = (size,) if isinstance(size, numbers.Number) else size
    try:
        if isinstance(given, (str, bytes)) or len(given) not in (1, 2):
            raise TypeError
        sides = tuple(int(side) for side in given) * (3 - len(given))
    except (TypeError, ValueError):
        raise ValueError(
            f"size must be an int or a sequence of one or two ints (height, width), got {size!r}"
        ) from None
    if min(sides) < 1:
        raise ValueError(f"the output size must be positive, got {size!r}")
    return sides[0], sides[1]


def _interpolation_mode(interpolation: Any) -> Any:
    """An ``InterpolationMode`` from one, or from its int / PIL ``Resampling`` value.

    Raises:
        ValueError: If it names no interpolation Pillow can resize with.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import pil_modes_mapping

    if isinstance(interpolation, InterpolationMode):
        if interpolation in pil_modes_mapping:
            return interpolation
    elif isinstance(interpolation, int) and not isinstance(interpolation, bool):
        for mode in (
            InterpolationMode.NEAREST,
            InterpolationMode.LANCZOS,
            InterpolationMode.BILINEAR,
            InterpolationMode.BICUBIC,
            InterpolationMode.BOX,
            InterpolationMode.HAMMING,
        ):
            if pil_modes_mapping[mode] == interpolation:
                return mode
    raise ValueError(
        "interpolation must be a torchvision InterpolationMode that Pillow supports, or its "
        f"int or PIL Resampling value, got {interpolation!r}"
    )


@functools.cache
def simplejpeg_module() -> ModuleType | None:
    """The ``simplejpeg`` module, or ``None`` where it is not installed (looked up once)."""
    try:
        import simplejpeg
    except ImportError:
        return None
    module: ModuleType = simplejpeg
    return module
