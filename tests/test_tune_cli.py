"""``revamper plan`` end to end on a tiny folder, and its one-line argument errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from revamper.cli import main


def tiny_folder(root: Path, classes: int = 2, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.jpg", quality=90)
    return root


FAST = ["--sample", "4", "--workers", "1", "--batch-size", "4", "--no-progress"]


def test_plan_prints_the_table_and_writes_the_figure(tmp_path: Path, capsys: Any) -> None:
    data = tiny_folder(tmp_path / "data")
    png = tmp_path / "figures" / "plan.png"
    argv = ["plan", "--data", str(data), "--pipeline", "light", "--plot", str(png), *FAST]
    assert main([*argv, "--budget", "1GB", "--min-diversity", "0.8"]) == 0
    out = capsys.readouterr().out
    for text in ("Every configuration", "standard", "split 2, r=3", "Predicted:", "Assumed:"):
        assert text in out
    assert "1 worker on" in out  # the cores-and-workers assumption is stated
    assert "revamper bench --scenarios" in out
    image = png.read_bytes()
    assert image.startswith(b"\x89PNG") and len(image) > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--pipeline", "nosuch"], "unknown pipeline"),
        (["--pipeline", "nosuchmodule:f"], "cannot import"),
        (["--plot", "figure.txt"], "ending in .png"),
    ],
)
def test_bad_arguments_give_one_line_errors(
    args: list[str], message: str, capsys: Any, tmp_path: Path
) -> None:
    data = [] if "--data" in args else ["--data", str(tiny_folder(tmp_path / "d", 1, 2))]
    assert main(["plan", *data, *args, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["--min-diversity", "1.5"],
        ["--min-diversity", "x"],
        ["--workers", "-1"],
        ["--sample", "0"],
        ["--budget", "lots"],
        ["--batch-size", "0"],
    ],
)
def test_bad_numbers_are_rejected_by_the_parser(args: list[str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        main(["plan", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and err.strip().splitlines()[-1].startswith("revamper plan: error:")


def test_a_partial_final_pair_is_tuned_for_r_only(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    from torchvision import transforms as T

    from revamper.pipelines import Decode

    module = types.ModuleType("tune_cli_test_pipelines")
    module.pair = lambda: (Decode(), T.PILToTensor())  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    data = tiny_folder(tmp_path / "d", 1, 2)
    # A (partial, final) pair has one split only: plan tunes r alone, and says where it split.
    assert main(["plan", "--data", str(data), "--pipeline", f"{module.__name__}:pair", *FAST]) == 0
    out = capsys.readouterr().out
    assert "split 1, r=2" in out and "split 2" not in out
    assert "only r was chosen" in out


def test_help_lists_the_options(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "plan" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    text = capsys.readouterr().out
    for option in ("--data", "--pipeline", "--budget", "--min-diversity", "--workers", "--plot"):
        assert option in text
