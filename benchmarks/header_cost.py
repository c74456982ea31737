"""What the codec's meta costs per put (encode) and per get (decode): v1 (pickled) against v2.

Codec version 1 described each cached value's structure in a pickled meta blob, which a planted
cache file could turn into code execution; version 2 writes a binary meta parsed without pickle
(issue 11). This script measures both on the same values, in one process:

- old: a frozen copy of version 1's ``encode``/``decode`` (below, unchanged but for names);
- new: :func:`revamper.store.codec.encode` / :func:`~revamper.store.codec.decode`.

Both lay out the same buffers, so the difference is the meta. Each call is timed with
``timeit`` over enough repetitions for about 10 ms; the four (old/new x encode/decode) cells of
a sample are measured interleaved, round after round, and the table gives the median and the
min-max of the per-call microseconds over the rounds.

Usage: ``python benchmarks/header_cost.py [--rounds 15]`` (under a minute).
"""

from __future__ import annotations

import argparse
import collections
import pickle
import statistics
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from revamper.store import codec

# --- frozen copy of codec version 1 (pickled meta) ----------------------------------------
_ALIGN = 64
_TUPLE, _LIST, _DICT, _ODICT, _NAMEDTUPLE = "t", "l", "d", "o", "n"
_SCALAR, _BYTES, _PIL, _NDARRAY, _TENSOR = "s", "b", "p", "a", "x"
_SCALARS = (int, float, complex, bool, str, type(None), np.generic)


def _align_up(offset: int) -> int:
    return (offset + _ALIGN - 1) // _ALIGN * _ALIGN


class _V1Encoder:
    def __init__(self) -> None:
        self.buffers: list[memoryview] = []

    def _add(self, data: memoryview) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    def node(self, value: Any) -> tuple[Any, ...]:
        kind = type(value)
        if kind is tuple:
            return (_TUPLE, [self.node(v) for v in value])
        if kind is list:
            return (_LIST, [self.node(v) for v in value])
        if kind is dict or kind is collections.OrderedDict:
            tag = _DICT if kind is dict else _ODICT
            return (tag, list(value.keys()), [self.node(v) for v in value.values()])
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return (_NAMEDTUPLE, kind, [self.node(v) for v in value])
        if isinstance(value, torch.Tensor):
            plain = value.as_subclass(torch.Tensor).detach().contiguous()
            flat = plain.reshape(-1).view(torch.uint8).numpy()
            sub = None if kind is torch.Tensor else (kind, dict(value.__dict__))
            dtype = str(plain.dtype).removeprefix("torch.")
            buf = self._add(flat.data)
            return (_TENSOR, dtype, tuple(plain.shape), buf, sub, value.requires_grad)
        if kind is np.ndarray:
            flat = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
            return (_NDARRAY, value.dtype, value.shape, self._add(flat.data))
        if isinstance(value, Image.Image):
            palette = None
            if value.palette is not None and value.mode in ("P", "PA"):
                palette = (value.palette.mode, bytes(value.palette.tobytes()))
            transparency = value.info.get("transparency")
            data = self._add(memoryview(value.tobytes()))
            return (_PIL, value.mode, value.size, data, palette, transparency)
        if kind is bytes or kind is bytearray:
            return (_BYTES, self._add(memoryview(value).cast("B")), kind is bytearray)
        if isinstance(value, _SCALARS):
            return (_SCALAR, value)
        raise TypeError(f"not in this benchmark's copy of v1: {kind}")


def v1_encode(value: Any) -> tuple[bytes, tuple[memoryview, ...], int]:
    """Version 1's ``encode``: ``(meta, buffers, payload_size)``."""
    encoder = _V1Encoder()
    tree = encoder.node(value)
    sizes = [buf.nbytes for buf in encoder.buffers]
    payload_size = 0
    for size in sizes:
        payload_size = _align_up(payload_size) + size
    meta = pickle.dumps((1, sizes, tree), protocol=5)
    return meta, tuple(encoder.buffers), payload_size


class _V1Decoder:
    def __init__(self, payload: np.ndarray[Any, Any], sizes: list[int]) -> None:
        self.views = []
        offset = 0
        for size in sizes:
            start = _align_up(offset)
            if start + size > payload.size:
                raise ValueError("payload too short")
            self.views.append(payload[start : start + size])
            offset = start + size

    def node(self, node: tuple[Any, ...]) -> Any:
        tag = node[0]
        if tag == _SCALAR:
            return node[1]
        if tag == _TUPLE:
            return tuple(self.node(child) for child in node[1])
        if tag == _LIST:
            return [self.node(child) for child in node[1]]
        if tag in (_DICT, _ODICT):
            items = zip(node[1], (self.node(child) for child in node[2]), strict=True)
            return dict(items) if tag == _DICT else collections.OrderedDict(items)
        if tag == _NAMEDTUPLE:
            return node[1](*(self.node(child) for child in node[2]))
        if tag == _PIL:
            _, mode, size, buf, palette, transparency = node
            image = Image.frombuffer(mode, size, self.views[buf], "raw", mode, 0, 1)
            if palette is not None:
                image.putpalette(palette[1], rawmode=palette[0])
            if transparency is not None:
                image.info["transparency"] = transparency
            return image
        if tag == _NDARRAY:
            _, dtype, shape, buf = node
            return self.views[buf].view(dtype).reshape(shape)
        if tag == _TENSOR:
            _, dtype_name, shape, buf, subclass, requires_grad = node
            dtype = getattr(torch, dtype_name)
            tensor = torch.from_numpy(self.views[buf]).view(dtype).reshape(shape)
            if subclass is not None:
                tensor = tensor.as_subclass(subclass[0])
                tensor.__dict__.update(subclass[1])
            if requires_grad:
                tensor.requires_grad_(True)
            return tensor
        if tag == _BYTES:
            data = self.views[node[1]]
            return bytearray(data) if node[2] else data.tobytes()
        raise ValueError(f"unknown tag {tag!r}")


def v1_decode(meta: bytes, payload: np.ndarray[Any, Any]) -> Any:
    """Version 1's ``decode``: the meta is unpickled."""
    version, sizes, tree = pickle.loads(meta)
    assert version == 1
    return _V1Decoder(payload, sizes).node(tree)


# --- the measurement ------------------------------------------------------------------------


def samples() -> dict[str, Any]:
    """The three values of the table."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    boxes = tv_tensors.BoundingBoxes(
        torch.tensor([[10, 20, 110, 120], [0, 0, 50, 60], [30, 40, 200, 210]]),
        format="XYXY",
        canvas_size=(224, 224),
    )
    return {
        "PIL 224x224 RGB + int label": (Image.fromarray(pixels), 3),
        "tv_tensors image + boxes + labels dict": (
            tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous()),
            {"boxes": boxes, "labels": torch.tensor([1, 7, 2])},
        ),
        "784-byte uint8 array": np.zeros((28, 28), dtype=np.uint8),
    }


def _payload(buffers: tuple[memoryview, ...], size: int) -> np.ndarray[Any, Any]:
    payload = np.zeros(size, dtype=np.uint8)
    offset = 0
    for buf in buffers:
        start = _align_up(offset)
        payload[start : start + buf.nbytes] = np.frombuffer(buf, dtype=np.uint8)
        offset = start + buf.nbytes
    return payload


def _per_call_us(fn: Callable[[], Any], number: int) -> float:
    return timeit.Timer(fn).timeit(number) / number * 1e6


def measure(value: Any, rounds: int) -> dict[str, list[float]]:
    """Per-call microseconds of the four cells, ``rounds`` interleaved rounds each."""
    old_meta, old_buffers, old_size = v1_encode(value)
    new = codec.encode(value)
    old_payload = _payload(old_buffers, old_size)
    new_payload = _payload(new.buffers, new.payload_size)
    cells: dict[str, Callable[[], Any]] = {
        "old encode": lambda: v1_encode(value),
        "new encode": lambda: codec.encode(value),
        "old decode": lambda: v1_decode(old_meta, old_payload),
        "new decode": lambda: codec.decode(new.meta, new_payload),
    }
    numbers = {}
    for name, fn in cells.items():
        once = max(_per_call_us(fn, 20), 0.1)
        numbers[name] = max(20, int(10_000 / once))  # about 10 ms per measurement
    results: dict[str, list[float]] = {name: [] for name in cells}
    for _ in range(rounds):
        for name, fn in cells.items():
            results[name].append(_per_call_us(fn, numbers[name]))
    results["meta bytes"] = [float(len(old_meta)), float(len(new.meta))]
    return results


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    """Print the table in Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "| value | meta bytes old / new | encode old | encode new | decode old | decode new |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, value in samples().items():
        r = measure(value, args.rounds)
        sizes = f"{int(r['meta bytes'][0])} / {int(r['meta bytes'][1])}"
        row = [_cell(r[k]) for k in ("old encode", "new encode", "old decode", "new decode")]
        lines.append(f"| {label} | {sizes} | {' | '.join(row)} |")
    lines.append(f"\nµs per call, median (min–max) over {args.rounds} interleaved rounds.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
