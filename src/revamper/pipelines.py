"""Augmentation pipelines as named steps, so they can be split, profiled and benchmarked.

A :class:`Pipeline` is the full per-sample pipeline, from what the data set returns (raw JPEG
bytes for the built-in data) to the tensor the model consumes, as an ordered list of named steps.
``pipeline.split(k)`` gives the ``(partial, final)`` pair for a split after step ``k``: the first
``k`` steps are cached, the rest run on every use.

Built-in pipelines (see :data:`BUILTIN`):

- ``imagenet``: decode, RandomResizedCrop(224) | flip, RandAugment(2, 9), PILToTensor. The split
  after the crop is the paper's setting. Its simplified variant has one RandAugment layer. The
  RandAugment is :class:`revamper.randaugment.RandAugment`: torchvision's, with identical
  results, minus a table it rebuilt on every call.
- ``light``: decode, RandomResizedCrop(224) | flip, PILToTensor.
- ``imagenet-fused`` and ``light-fused``: the same with decode and crop fused into one cheaper
  step, :class:`~revamper.fused_crop.FusedDecodeCrop` (same crop distribution, decodes JPEGs
  only at the DCT scale the crop needs, resizes full-resolution crops with torch's kernel);
  :func:`fuse_decode_crop` does this to any pipeline that starts with ``Decode`` and
  ``RandomResizedCrop``.

Users can name their own with ``module:function``; the function returns either a list of
callables (the full pipeline, split with ``split``) or a ``(partial, final)`` pair.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import io
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from revamper.fused_crop import FusedDecodeCrop
from revamper.transforms import Chain

Transform = Callable[[Any], Any]


def read_bytes(path: str) -> bytes:
    """Return a file's raw bytes: an ``ImageFolder`` loader that leaves decoding to the transform.

    A module-level function, so it pickles into DataLoader worker processes (a lambda does not,
    under the ``spawn`` start method).
    """
    with open(path, "rb") as file:
        return file.read()


class Decode:
    """Decode encoded image bytes (JPEG, PNG, ...) into a PIL image of ``mode``.

    Args:
        mode: The PIL mode of the result (``"RGB"`` by default).
    """

    def __init__(self, mode: str = "RGB") -> None:
        self.mode = mode

    def __call__(self, data: bytes | Image.Image) -> Image.Image:
        """Decode ``data``; a PIL image passes through (converted to ``mode``)."""
        image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
        return image.convert(self.mode) if image.mode != self.mode else _loaded(image)

    def __repr__(self) -> str:
        return f"Decode(mode={self.mode!r})"


def _loaded(image: Image.Image) -> Image.Image:
    image.load()
    return image


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A full augmentation pipeline as ordered, named steps.

    Attributes:
        name: Short name (used on the command line and in reports).
        steps: ``(name, transform)`` pairs, in order.
        default_split: Number of leading steps cached by default.
        simplified: The cheaper variant's steps (fewer random operations), if there is one.
        description: One line for ``--help`` and reports.
        fixed_split: ``True`` when the pipeline came as a ``(partial, final)`` pair that cannot
            be split anywhere else.
    """

    name: str
    steps: tuple[tuple[str, Transform], ...]
    default_split: int
    simplified: tuple[tuple[str, Transform], ...] | None = None
    description: str = ""
    fixed_split: bool = False

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"pipeline {self.name!r} has no steps")
        self.check_split(self.default_split)

    @property
    def step_names(self) -> list[str]:
        """The names of the steps, in order."""
        return [name for name, _ in self.steps]

    def check_split(self, split: int) -> int:
        """Return ``split`` if it is a valid split point, else raise ``ValueError``."""
        if self.fixed_split and split != self.default_split:
            raise ValueError(
                f"pipeline {self.name!r} was given as a (partial, final) pair, so it can only be "
                "split where it was; return a list of transforms to choose the split"
            )
        if not 0 <= split <= len(self.steps):
            raise ValueError(
                f"split must be between 0 and {len(self.steps)} for pipeline {self.name!r} "
                f"(steps: {', '.join(self.step_names)}), got {split}"
            )
        return split

    def split(self, split: int | None = None) -> tuple[Transform, Transform]:
        """The ``(partial, final)`` transforms for a split after ``split`` steps."""
        k = self.default_split if split is None else self.check_split(split)
        return _chain(self.steps[:k]), _chain(self.steps[k:])

    def split_simplified(self, split: int | None = None) -> tuple[Transform, Transform] | None:
        """Like :meth:`split` for the simplified variant, or ``None`` if there is none."""
        if self.simplified is None:
            return None
        k = self.default_split if split is None else self.check_split(split)
        return _chain(self.simplified[:k]), _chain(self.simplified[k:])

    def full(self) -> Transform:
        """The whole pipeline as one callable."""
        return _chain(self.steps)

    def describe_split(self, split: int | None = None) -> str:
        """``"decode, crop | flip, randaugment, to_tensor"``: where the split falls."""
        k = self.default_split if split is None else split
        names = self.step_names
        return f"{', '.join(names[:k]) or '(nothing)'} | {', '.join(names[k:]) or '(nothing)'}"


def _chain(steps: Sequence[tuple[str, Transform]]) -> Transform:
    return Chain(*(transform for _, transform in steps))


def imagenet_pipeline(
    layers: int = 2, magnitude: int = 9, size: int = 224, *, fused: bool = False
) -> Pipeline:
    """The ImageNet-style pipeline of the paper: decode, crop | flip, RandAugment, to-tensor.

    Args:
        layers: RandAugment's number of operations.
        magnitude: RandAugment's magnitude.
        size: The crop's output size.
        fused: Fuse decode and crop into one :class:`~revamper.fused_crop.FusedDecodeCrop`.
    """
    from torchvision import transforms as T

    from revamper.randaugment import RandAugment  # torchvision's, minus a per-call rebuild

    def steps(n: int) -> tuple[tuple[str, Transform], ...]:
        return (
            ("decode", Decode("RGB")),
            ("random_resized_crop", T.RandomResizedCrop(size)),
            ("horizontal_flip", T.RandomHorizontalFlip()),
            (f"randaugment_{n}x{magnitude}", RandAugment(num_ops=n, magnitude=magnitude)),
            ("to_tensor", T.PILToTensor()),
        )

    pipeline = Pipeline(
        name="imagenet",
        steps=steps(layers),
        default_split=2,
        simplified=steps(max(layers - 1, 0)) if layers > 1 else None,
        description=(
            f"decode, RandomResizedCrop({size}) | flip, RandAugment({layers}, {magnitude}), "
            "PILToTensor"
        ),
    )
    return _fused_or_not(pipeline, fused)


def light_pipeline(size: int = 224, *, fused: bool = False) -> Pipeline:
    """A lighter pipeline: decode, crop | flip, to-tensor (``fused``: as for imagenet)."""
    from torchvision import transforms as T

    pipeline = Pipeline(
        name="light",
        steps=(
            ("decode", Decode("RGB")),
            ("random_resized_crop", T.RandomResizedCrop(size)),
            ("horizontal_flip", T.RandomHorizontalFlip()),
            ("to_tensor", T.PILToTensor()),
        ),
        default_split=2,
        description=f"decode, RandomResizedCrop({size}) | flip, PILToTensor",
    )
    return _fused_or_not(pipeline, fused)


def _fused_or_not(pipeline: Pipeline, fused: bool) -> Pipeline:
    if not fused:
        return pipeline
    made = fuse_decode_crop(pipeline)
    assert made is not None  # the built-in pipelines start with decode and crop
    return made


def fuse_decode_crop(pipeline: Pipeline) -> Pipeline | None:
    """The pipeline with its leading ``Decode`` + ``RandomResizedCrop`` fused into one step.

    The fused step, :class:`~revamper.fused_crop.FusedDecodeCrop`, takes the crop's arguments
    and ``Decode``'s mode, so the outputs have the same distribution (within 2 grey levels
    whenever the crop is under twice the output size: its torch resize). Split points after
    the crop move down by one, so the default split still caches decode and crop.

    Returns:
        The fused pipeline, named ``<name>-fused``; ``None`` when the pipeline does not start
        with a :class:`Decode` followed by a torchvision ``RandomResizedCrop``, or when it
        came as a fixed ``(partial, final)`` pair.
    """
    from torchvision.transforms import RandomResizedCrop

    def fused(steps: tuple[tuple[str, Transform], ...]) -> tuple[tuple[str, Transform], ...] | None:
        if len(steps) < 2:
            return None
        decode, crop = steps[0][1], steps[1][1]
        exact_crop = isinstance(crop, RandomResizedCrop) and type(crop) is RandomResizedCrop
        if not isinstance(decode, Decode) or not exact_crop:
            return None  # a subclass of RandomResizedCrop may crop differently
        assert isinstance(crop, RandomResizedCrop)
        step = FusedDecodeCrop(
            tuple(crop.size),
            scale=(crop.scale[0], crop.scale[1]),
            ratio=(crop.ratio[0], crop.ratio[1]),
            mode=decode.mode,
            interpolation=crop.interpolation,
        )
        return (("decode_random_resized_crop", step), *steps[2:])

    steps = fused(pipeline.steps)
    if pipeline.fixed_split or steps is None:
        return None
    simplified = None if pipeline.simplified is None else fused(pipeline.simplified)
    split = pipeline.default_split - 1 if pipeline.default_split >= 2 else pipeline.default_split
    description = pipeline.description.replace(
        "decode, RandomResizedCrop", "fused decode + RandomResizedCrop"
    )
    return dataclasses.replace(
        pipeline,
        name=f"{pipeline.name}-fused",
        steps=steps,
        default_split=split,
        simplified=simplified,
        description=description,
    )


def fused_or_error(pipeline: Pipeline) -> Pipeline:
    """:func:`fuse_decode_crop`, or a ``ValueError`` that says why the pipeline cannot fuse."""
    if pipeline.name.endswith("-fused"):
        return pipeline
    fused = fuse_decode_crop(pipeline)
    if fused is None:
        raise ValueError(
            f"pipeline {pipeline.name!r} cannot be fused: it must start with Decode and a "
            f"torchvision RandomResizedCrop (its steps: {', '.join(pipeline.step_names)})"
        )
    return fused


BUILTIN: dict[str, Callable[[], Pipeline]] = {
    "imagenet": imagenet_pipeline,
    "light": light_pipeline,
    "imagenet-fused": functools.partial(imagenet_pipeline, fused=True),
    "light-fused": functools.partial(light_pipeline, fused=True),
}
"""Built-in pipelines by name."""


def load_pipeline(spec: str) -> Pipeline:
    """Resolve a built-in name or ``module:function`` into a :class:`Pipeline`.

    Args:
        spec: A key of :data:`BUILTIN`, or ``module:function`` where the function takes no
            arguments and returns a list of callables (the full pipeline) or a
            ``(partial, final)`` pair.

    Raises:
        ValueError: If ``spec`` names nothing, or the function returns something else.
    """
    if spec in BUILTIN:
        return BUILTIN[spec]()
    if ":" not in spec:
        raise ValueError(
            f"unknown pipeline {spec!r}: use one of {', '.join(BUILTIN)} or module:function"
        )
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import module {module_name!r} for pipeline {spec!r}: {exc}"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"module {module_name!r} has no function {function_name!r}")
    made = function()
    return pipeline_from(made, name=spec)


def pipeline_from(made: Any, *, name: str) -> Pipeline:
    """Build a :class:`Pipeline` from a list of callables or a ``(partial, final)`` pair."""
    if isinstance(made, Pipeline):
        return made
    if isinstance(made, tuple) and len(made) == 2 and all(callable(t) for t in made):
        return Pipeline(
            name=name,
            steps=(("partial", made[0]), ("final", made[1])),
            default_split=1,
            description=f"{made[0]!r} | {made[1]!r}",
            fixed_split=True,
        )
    transforms = getattr(made, "transforms", made)  # a torchvision Compose
    if isinstance(transforms, (list, tuple)) and transforms and all(map(callable, transforms)):
        steps = tuple((_step_name(t), t) for t in transforms)
        return Pipeline(
            name=name,
            steps=steps,
            default_split=max(len(steps) // 2, 1),
            description=", ".join(step for step, _ in steps),
        )
    raise ValueError(
        f"pipeline {name!r} must be a list of callables, a torchvision Compose, or a "
        f"(partial, final) pair of callables; got {type(made).__name__}"
    )


def _step_name(transform: Transform) -> str:
    name = getattr(transform, "__name__", None) or type(transform).__name__
    return str(name)
