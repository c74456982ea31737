"""The house's import rules: the core never imports a tool, layers, no circles (import-linter).

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``). The first test checks the
tree; the others break a copy of it on purpose, once per kind of rule, to show that the check
fails when a rule is broken (a check that cannot fail proves nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import importlinter  # noqa: F401  (the dev extra installs it: missing is a failure, not a skip)
import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = "The runtime core never imports a tool"
LAYERS = "Layers, top down"
CIRCLES = "No import circles"
_LINT = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


def _lint(house: Path) -> tuple[int, str]:
    """Run ``lint-imports`` on the house at ``house`` (its ``pyproject.toml`` and ``src/``)."""
    env = {**os.environ, "PYTHONPATH": str(house / "src")}
    done = subprocess.run(
        [sys.executable, "-c", _LINT, "--no-cache", "pyproject.toml"],
        cwd=house,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def _verdict(output: str, contract: str) -> str:
    """``KEPT`` or ``BROKEN``: the summary line's verdict for ``contract``."""
    after = output.split(contract, 1)[1]
    kept, broken = after.find("KEPT"), after.find("BROKEN")
    if broken == -1 or (kept != -1 and kept < broken):
        return "KEPT"
    return "BROKEN"


@pytest.fixture
def house_copy(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "src" / "revamper",
        tmp_path / "src" / "revamper",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_tree_keeps_its_import_contracts() -> None:
    code, output = _lint(ROOT)
    assert code == 0, output
    for contract in (CORE, LAYERS, CIRCLES):
        assert _verdict(output, contract) == "KEPT", output


def test_the_core_importing_a_tool_breaks_the_contracts(house_copy: Path) -> None:
    # The planner (the bottom of the core) reaching up to the benchmark, indirectly.
    package = house_copy / "src" / "revamper"
    (package / "plan" / "_upward.py").write_text("from revamper.bench import scenarios\n")
    _append(package / "plan" / "limits.py", "from revamper.plan import _upward  # noqa")
    code, output = _lint(house_copy)
    assert code != 0, output
    assert _verdict(output, CORE) == "BROKEN", output
    assert _verdict(output, LAYERS) == "BROKEN", output
    assert "revamper.plan._upward -> revamper.bench.scenarios" in output


def test_one_tool_importing_another_breaks_the_layers(house_copy: Path) -> None:
    _append(house_copy / "src" / "revamper" / "bench" / "lru.py", "import revamper.tune  # noqa")
    code, output = _lint(house_copy)
    assert code != 0, output
    assert _verdict(output, CORE) == "KEPT", output
    assert _verdict(output, LAYERS) == "BROKEN", output


def test_an_import_circle_breaks_the_contracts(house_copy: Path) -> None:
    # Two store modules that import each other: no layer rule sees it, the circle rule does.
    store = house_copy / "src" / "revamper" / "store"
    (store / "_one.py").write_text("from revamper.store import _two  # noqa\n")
    (store / "_two.py").write_text("from revamper.store import _one  # noqa\n")
    code, output = _lint(house_copy)
    assert code != 0, output
    assert _verdict(output, CORE) == "KEPT", output
    assert _verdict(output, CIRCLES) == "BROKEN", output


def test_a_type_only_import_counts(house_copy: Path) -> None:
    # ``if TYPE_CHECKING:`` imports are imports too: a type-only circle is still a circle.
    store = house_copy / "src" / "revamper" / "store"
    (store / "_one.py").write_text("from revamper.store import _two  # noqa\n")
    (store / "_two.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from revamper.store import _one\n"
    )
    code, output = _lint(house_copy)
    assert code != 0, output
    assert _verdict(output, CIRCLES) == "BROKEN", output
