"""The tuner's side of ``RevamperLoader.from_pipeline``; ``revamper tune`` (old name ``plan``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from revamper import RevamperLoader
from revamper.cli import main
from revamper.loader import pipeline as port
from revamper.tune import tuned_loader
from tests.test_tune import ArrayDataset, grow, one_of_four, to_tensor
from tests.test_tune_cli import FAST, tiny_folder


def test_the_tuner_side_builds_the_same_loader_as_from_pipeline() -> None:
    dataset = ArrayDataset(16)
    steps = [grow, one_of_four, to_tensor]
    with tuned_loader(dataset, steps, batch_size=8, seed=0) as loader:
        assert isinstance(loader, RevamperLoader)
        assert 1 <= loader.plan_config.reuse_factor <= 5
        labels = torch.cat([batch[1] for batch in loader])
        assert sorted(labels.tolist()) == sorted(i % 3 for i in range(16))
    with pytest.raises(TypeError, match="partial_transform"):
        tuned_loader(dataset, steps, partial_transform=grow)


def test_from_pipeline_asks_the_plugged_in_chooser(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[Any, ...]] = []

    def chooser(*args: Any) -> tuple[Any, Any, int]:
        asked.append(args)
        return grow, to_tensor, 2

    monkeypatch.setattr(port, "_chooser", [chooser])
    with RevamperLoader.from_pipeline(ArrayDataset(8), ["steps"], batch_size=4) as loader:
        assert loader.plan_config.reuse_factor == 2
    assert asked[0][1:4] == (["steps"], None, 0.9)
    monkeypatch.setattr(port, "_chooser", [])
    with pytest.raises(RuntimeError, match="needs the tuner"):
        RevamperLoader.from_pipeline(ArrayDataset(8), ["steps"])


def test_importing_the_loader_does_not_import_the_tuner() -> None:
    # The root plugs the tuner in lazily: a training job that never tunes never loads it.
    code = "import sys, revamper.loader; print('revamper.tune' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["tune", "plan"])
def test_tune_runs_under_its_name_and_its_old_one(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny_folder(tmp_path / "data", 1, 2)
    assert main([name, "--data", str(data), "--pipeline", "light", *FAST]) == 0
    assert f"revamper {name}: 2 images" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(SystemExit):
        main([name, "--sample", "0"])
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"revamper {name}: error:")


def test_help_names_tune_and_the_alias(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "tune recommend where to split" in out
    assert "plan the old name of 'tune'" in out
