"""Small picklable helpers for composing and adapting transforms (spawned workers pickle them).

- :class:`Chain`: apply callables in order.
- :class:`Albumentations`: an albumentations transform as a plain callable, on images and on
  whole samples (dicts or tuples with masks, boxes, keypoints).
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image


class Chain:
    """Apply callables in order, skipping ``None``: ``Chain(f, None, g)(x) == g(f(x))``.

    Unlike a lambda, a ``Chain`` of picklable callables is picklable, so it works with the
    ``spawn`` start method.
    """

    def __init__(self, *transforms: Callable[[Any], Any] | None) -> None:
        for position, transform in enumerate(transforms):
            if transform is not None and not callable(transform):
                raise TypeError(f"transform {position} of Chain is not callable: {transform!r}")
        self.transforms = tuple(t for t in transforms if t is not None)

    def __call__(self, value: Any) -> Any:
        """Apply the transforms in order."""
        for transform in self.transforms:
            value = transform(value)
        return value

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Chain({inner})"


_adapters_made = itertools.count()


class Albumentations:
    """Use an albumentations transform (or ``Compose``) as a revamper transform.

    albumentations transforms are called with keyword arguments and return a dict:
    ``t(image=x)["image"]``. This adapter makes one a plain callable:

    - on an image (a numpy array, or a PIL image, converted with ``np.asarray``), it returns
      ``t(image=x)["image"]``: the usual ``partial_transform=`` / ``final_transform=`` use,
      where the transform sees an item's input and the target passes through;
    - on a dict (a whole sample, with ``whole_sample=True``), it calls ``t(**sample)`` and
      returns the dict: image, mask, bboxes, keypoints and their label fields are transformed
      together, so boxes and masks stay consistent with the cropped and flipped image; keys the
      transform does not know pass through. ``image_key`` names the image's key when it is not
      ``"image"`` (Hugging Face's ``"pixel_values"``, say);
    - on a tuple or list (a whole sample, with ``whole_sample=True``), ``fields`` names its
      positions (``fields=("image", "mask")`` for ``(image, mask, label)`` items: image and
      mask are transformed together, the label passes through); without ``fields`` only the
      first element is transformed, as the image.

    **Randomness.** albumentations 2.x transforms draw from their own random generator, seeded
    when the transform is built, so DataLoader worker processes forked from one process would
    all draw the same augmentations. Unless ``reseed=False``, the adapter reseeds the wrapped
    transform whenever torch's seed has changed since its last call, from
    ``torch.initial_seed()`` and an id of the adapter: DataLoader seeds torch differently in
    every worker, and RevamperLoader seeds it for every batch (from the run's seed and the
    batch's place in the run), so workers differ, adapters differ, a seeded run repeats, and a
    resumed run draws what the uninterrupted one drew.

    albumentations is not imported by this module: the adapter only calls the object it wraps.
    Like the wrapped transform, it is picklable (``spawn`` workers).

    Args:
        transform: The albumentations transform or ``Compose``.
        image_key: The key of the image in dict samples.
        fields: albumentations target names of the positions of tuple/list samples.
        reseed: Reseed the wrapped transform's generator when torch's seed changes (see above).
    """

    def __init__(
        self,
        transform: Callable[..., Any],
        image_key: str = "image",
        fields: Sequence[str] | None = None,
        *,
        reseed: bool = True,
    ) -> None:
        if not callable(transform):
            raise TypeError(f"Albumentations needs a callable transform, got {transform!r}")
        self.transform = transform
        self.image_key = image_key
        self.fields = None if fields is None else tuple(fields)
        self.reseed = reseed
        self._salt = zlib.crc32(repr(transform).encode()) ^ (next(_adapters_made) << 32)
        self._seeded_with: tuple[int, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_seeded_with"] = None  # a spawned process reseeds too
        return state

    def _reseed_for_this_process(self) -> None:
        seeded_with = (os.getpid(), torch.initial_seed())
        if not self.reseed or self._seeded_with == seeded_with:
            return
        self._seeded_with = seeded_with
        set_random_seed = getattr(self.transform, "set_random_seed", None)
        if callable(set_random_seed):  # albumentations >= 2 (1.x uses the global generators)
            set_random_seed((seeded_with[1] ^ self._salt) % 2**32)

    def __call__(self, sample: Any) -> Any:
        """Transform an image, a dict sample or a tuple/list sample (see the class)."""
        self._reseed_for_this_process()
        if isinstance(sample, Mapping):
            return self._call_dict(sample)
        if isinstance(sample, (tuple, list)):
            return self._call_sequence(sample)
        return self.transform(image=_as_array(sample))["image"]

    def _call_dict(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        data = dict(sample)
        if self.image_key != "image":
            if "image" in data:
                raise ValueError(
                    f"Albumentations(image_key={self.image_key!r}): the sample has both "
                    f"{self.image_key!r} and 'image'"
                )
            data["image"] = data.pop(self.image_key)
        data["image"] = _as_array(data["image"])
        out = dict(self.transform(**data))
        if self.image_key != "image":
            out[self.image_key] = out.pop("image")
        return out

    def _call_sequence(self, sample: Sequence[Any]) -> Any:
        fields = self.fields or ("image",)
        if len(fields) > len(sample):
            raise ValueError(
                f"Albumentations(fields={fields!r}) names {len(fields)} positions, but the "
                f"sample has {len(sample)}"
            )
        data = dict(zip(fields, sample, strict=False))
        data["image"] = _as_array(data["image"])
        out = self.transform(**data)
        result = [out[name] for name in fields] + list(sample[len(fields) :])
        return type(sample)(result) if isinstance(sample, tuple) else result

    def __repr__(self) -> str:
        extra = "" if self.image_key == "image" else f", image_key={self.image_key!r}"
        if self.fields is not None:
            extra += f", fields={self.fields!r}"
        return f"Albumentations({self.transform!r}{extra})"


def _as_array(image: Any) -> Any:
    """A PIL image as a numpy array (albumentations takes arrays); anything else unchanged."""
    if isinstance(image, Image.Image):
        return np.asarray(image)
    return image
