"""The partial transform's identity changes with its code and parameters, and only with them.

Before, every ``functools.partial`` reduced to ``functools.partial`` and torchvision's
``Lambda(f)`` to ``Lambda()``, so a disk cache served stale entries after the function or its
arguments changed (issue 11, item 6).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms import v2

from revamper.store import transform_identity as identity_module
from revamper.store.transform_identity import transform_identity


def scale(x: Any, factor: float = 1.0, *, offset: int = 0) -> Any:
    return x * factor + offset


def shift(x: Any, factor: float = 1.0, *, offset: int = 0) -> Any:
    return x * factor - offset


def test_a_changed_partial_argument_or_keyword_changes_the_identity() -> None:
    base = transform_identity(functools.partial(scale, 2.0, offset=1))
    assert base != transform_identity(functools.partial(scale, 3.0, offset=1))
    assert base != transform_identity(functools.partial(scale, 2.0, offset=2))
    assert base != transform_identity(functools.partial(shift, 2.0, offset=1))
    assert base == transform_identity(functools.partial(scale, 2.0, offset=1))
    assert "partial(" in base and "scale" in base and "offset=1" in base
    nested = functools.partial(functools.partial(scale, 2.0), offset=np.arange(3))
    other = functools.partial(functools.partial(scale, 2.0), offset=np.arange(3) + 1)
    assert transform_identity(nested) != transform_identity(other)


@pytest.mark.parametrize("lambda_type", [T.Lambda, v2.Lambda])
def test_a_changed_lambda_function_changes_the_identity(lambda_type: Any) -> None:
    one = transform_identity(lambda_type(lambda x: x))
    other = transform_identity(lambda_type(lambda x: x + 1))
    assert one != other
    assert one.startswith("Lambda(fn[") and "<lambda>" in one
    assert transform_identity(T.Compose([lambda_type(scale)])) != transform_identity(
        T.Compose([lambda_type(abs)])
    )


def _define(source: str, module: str = "user_transforms") -> Any:
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile(textwrap.dedent(source), f"<{module}>", "exec"), namespace)
    return namespace


def test_a_changed_function_body_changes_the_identity() -> None:
    one = _define("def crop(x):\n    return x[:10]\n")["crop"]
    other = _define("def crop(x):\n    return x[:12]\n")["crop"]
    same = _define("def crop(x):\n    return x[:10]\n")["crop"]
    assert one.__qualname__ == other.__qualname__ and one.__module__ == other.__module__
    assert transform_identity(one) != transform_identity(other)
    assert transform_identity(one) == transform_identity(same)
    # A nested function's body, a default and a module constant it reads count too.
    inner = _define("def f(x):\n    def g(y):\n        return y + 1\n    return g(x)\n")["f"]
    inner2 = _define("def f(x):\n    def g(y):\n        return y + 2\n    return g(x)\n")["f"]
    assert transform_identity(inner) != transform_identity(inner2)
    default = _define("def f(x, k=3):\n    return x * k\n")["f"]
    default2 = _define("def f(x, k=4):\n    return x * k\n")["f"]
    assert transform_identity(default) != transform_identity(default2)
    size = _define("SIZE = 224\ndef f(x):\n    return x[:SIZE]\n")["f"]
    size2 = _define("SIZE = 256\ndef f(x):\n    return x[:SIZE]\n")["f"]
    assert transform_identity(size) != transform_identity(size2)


def _make(threshold: Any) -> Any:
    def keep(x: Any) -> Any:
        return x > threshold

    return keep


def test_a_changed_closure_value_changes_the_identity() -> None:
    assert transform_identity(_make(2)) != transform_identity(_make(3))
    assert transform_identity(_make("a")) != transform_identity(_make(b"a"))
    assert transform_identity(_make((1, None))) != transform_identity(_make((1, 2)))
    assert transform_identity(_make(scale)) != transform_identity(_make(abs))
    assert transform_identity(_make(torch.ones(2))) != transform_identity(_make(torch.zeros(2)))
    assert transform_identity(_make(2)) == transform_identity(_make(2))


def test_torchvision_transforms_keep_their_readable_repr() -> None:
    text = transform_identity(T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip()]))
    assert text.startswith("Compose(RandomResizedCrop(size=(224, 224)")
    assert "RandomHorizontalFlip(p=0.5)" in text and " at 0x" not in text
    applied = transform_identity(T.RandomApply([T.RandomHorizontalFlip()], p=0.3))
    assert applied != transform_identity(T.RandomApply([T.RandomHorizontalFlip()], p=0.7))


@pytest.mark.parametrize("module", [T, v2])
def test_parameters_a_repr_rounds_still_change_the_identity(module: Any) -> None:
    # Found in review: torchvision's RandomResizedCrop prints its scale and ratio to four
    # digits, so crops of different ratios shared one identity and one disk cache.
    one = module.RandomResizedCrop(224, ratio=(0.75, 4 / 3))
    other = module.RandomResizedCrop(224, ratio=(0.7500049, 1.33334))
    assert transform_identity(one) != transform_identity(other)
    again = module.RandomResizedCrop(224, ratio=(0.75, 4 / 3))
    assert transform_identity(one) == transform_identity(again)
    assert transform_identity(one).startswith("RandomResizedCrop(size=(224, 224)")


def test_scriptable_containers_and_a_dtype_its_repr_leaves_out_are_seen() -> None:
    # Found in review: nn.Sequential (torchvision's scriptable Compose) and nn.ModuleList kept
    # their children's rounded reprs, and v2.ToDtype's repr omits its dtype: a float16 disk
    # cache was served to a float32 run.
    def crop(ratio: float) -> Any:
        return T.RandomResizedCrop(224, ratio=(0.75, ratio))

    assert transform_identity(torch.nn.Sequential(crop(1.33333))) != transform_identity(
        torch.nn.Sequential(crop(1.333333))
    )
    assert transform_identity(T.RandomApply(torch.nn.ModuleList([crop(1.33333)]))) != (
        transform_identity(T.RandomApply(torch.nn.ModuleList([crop(1.333333)])))
    )
    assert transform_identity(v2.ToDtype(torch.float16)) != transform_identity(
        v2.ToDtype(torch.float32)
    )


class OnDevice:
    """A user's transform with a per-rank attribute its repr leaves out (it computes alike)."""

    def __init__(self, rank: int) -> None:
        self.device = f"cuda:{rank}"
        self.created = float(rank)

    def __call__(self, x: Any) -> Any:
        return x

    def __repr__(self) -> str:
        return "OnDevice()"


def test_a_users_own_attributes_stay_out_and_so_does_private_state() -> None:
    # Found in review of the fix above: a device or a time in a user's transform split the
    # ranks' identities (a DistributedSetupError) and dropped a disk cache every run. A user's
    # class keeps its repr alone (cache_key= decides what it does not show).
    assert transform_identity(OnDevice(0)) == transform_identity(OnDevice(1)) == "OnDevice()"
    from revamper.randaugment import RandAugment

    step = RandAugment()
    before = transform_identity(step)
    step(torch.zeros(3, 32, 32, dtype=torch.uint8))  # fills its private table cache
    assert transform_identity(step) == before
    assert "training" not in transform_identity(T.RandomHorizontalFlip())


class Opaque:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: Any) -> Any:
        return x


def test_opaque_callables_warn_once_that_cache_key_decides() -> None:
    identity_module._warned.clear()
    with pytest.warns(UserWarning, match="cache_key") as record:
        text = transform_identity(Opaque(3))
    assert len(record) == 1 and "Opaque" in str(record[0].message)
    assert text.endswith("test_transform_identity.Opaque") and "0x" not in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert transform_identity(T.Compose([Opaque(4)])) == f"Compose({text})"


_MODULE = """
import functools
from torchvision import transforms as T

LIMIT = 7


def helper(x):
    return x + LIMIT


def pick(x, names=("a", "b")):
    return x in {"red", "green", "blue"} and names


def make(k):
    def inner(x):
        return helper(x) * k
    return inner


PIPELINE = T.Compose([
    functools.partial(pick, names=("c", frozenset({"x", "y", "z"}))),
    T.Lambda(lambda x: x),
    make(3),
    T.RandomHorizontalFlip(),
])
"""


def test_the_same_code_gives_the_same_identity_across_processes(tmp_path: Path) -> None:
    (tmp_path / "stable_pipeline.py").write_text(_MODULE)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import stable_pipeline; "
        "from revamper.store.transform_identity import transform_identity; "
        "print(transform_identity(stable_pipeline.PIPELINE))"
    )
    outputs = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            env=env, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        outputs.add(result.stdout.strip())
    assert len(outputs) == 1, outputs
    (text,) = outputs
    assert text.startswith("Compose(partial(fn[") and "RandomHorizontalFlip(p=0.5)" in text
    assert " at 0x" not in text


class _Opaque:
    """A callable object whose repr holds an address: its parameters cannot be seen."""

    def __call__(self, x: object) -> object:
        return x


def test_only_a_cache_that_outlives_the_run_warns_about_an_opaque_transform(
    tmp_path: Path,
) -> None:
    import warnings

    from revamper import RevamperLoader

    data = list(range(8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a memory cache is rebuilt every run: nothing to say
        with RevamperLoader(data, batch_size=4, partial_transform=_Opaque()) as loader:
            assert sum(len(batch) for batch in loader) == 8
    with (
        pytest.warns(UserWarning, match="cache_key"),
        RevamperLoader(
            data, batch_size=4, partial_transform=_Opaque(), cache="disk", cache_dir=tmp_path
        ) as loader,
    ):
        assert sum(len(batch) for batch in loader) == 8


def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


def _triple(x: torch.Tensor) -> torch.Tensor:
    return x * 3


def _script(module: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        return torch.jit.script(module)


def test_scripted_transforms_show_their_code_and_parameters() -> None:
    crop = _script(T.RandomResizedCrop(224, scale=(0.1, 1.0)))
    assert transform_identity(crop) == transform_identity(
        _script(T.RandomResizedCrop(224, scale=(0.1, 1.0)))
    )
    assert transform_identity(crop) != transform_identity(
        _script(T.RandomResizedCrop(224, scale=(0.2, 1.0)))
    )
    flips = [
        _script(torch.nn.Sequential(T.RandomResizedCrop(224), T.RandomHorizontalFlip(p)))
        for p in (0.3, 0.4)
    ]
    assert transform_identity(flips[0]) != transform_identity(flips[1])
    crop.eval()  # scripted code may branch on self.training
    assert transform_identity(crop) != transform_identity(
        _script(T.RandomResizedCrop(224, scale=(0.1, 1.0)))
    )
    assert transform_identity(_script(_double)) != transform_identity(_script(_triple))
    assert transform_identity(_script(_Scaled(2.0))) != transform_identity(_script(_Scaled(7.0)))
    assert transform_identity(_script(_Scaled(2.0, 1.0))) != transform_identity(
        _script(_Scaled(2.0, 9.0))
    )


class _Scaled(torch.nn.Module):
    """A private attribute and a private buffer, both read by the scripted code."""

    def __init__(self, p: float, w: float = 1.0) -> None:
        super().__init__()
        self._p = p
        self.register_buffer("_w", torch.tensor(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._p * self._w
