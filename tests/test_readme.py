"""The README shows code that runs: its quick start is examples/quickstart.py, verbatim."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def _code_after_docstring(path: Path) -> str:
    source = path.read_text()
    module = ast.parse(source)
    first = module.body[0]
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    lines = source.splitlines(keepends=True)
    return "".join(lines[first.end_lineno :]).lstrip("\n")


def test_readme_quick_start_is_the_example_file() -> None:
    assert _quick_start_block() == _code_after_docstring(ROOT / "examples" / "quickstart.py")
