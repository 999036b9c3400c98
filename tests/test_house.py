"""The house rules the code keeps, read from its syntax: functions short enough to read whole,
and command modules that parse, call the library and render (no classes of their own)."""

from __future__ import annotations

import ast
from pathlib import Path

import rnnlm_cli

PACKAGE_DIR = Path(rnnlm_cli.__file__).resolve().parent
LONGEST_BODY = 49
"""Lines a function's body may take, its docstring left out."""
COMMAND_MODULES = ("tokenize", "train", "eval", "generate", "export", "analyze", "compare")


def body_lengths(path: Path) -> list[tuple[int, str]]:
    """(lines, name) of every function in ``path``, the docstring not counted."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            has_docstring = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                             and isinstance(body[0].value.value, str))
            start = (body[1].lineno if len(body) > 1 else body[0].end_lineno + 1) if has_docstring else body[0].lineno
            found.append((node.end_lineno - start + 1, node.name))
    return found


def test_body_lengths_counts_lines_without_the_docstring(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('def f():\n    """Doc\n    string."""\n    a = 1\n    return a\n\n\ndef g():\n    pass\n')
    assert body_lengths(source) == [(2, "f"), (1, "g")]


def test_no_function_body_is_longer_than_the_rule():
    long = [f"{path.relative_to(PACKAGE_DIR)}:{name} ({lines} lines)"
            for path in sorted(PACKAGE_DIR.rglob("*.py")) for lines, name in body_lengths(path) if lines > LONGEST_BODY]
    assert not long, f"split these into functions of at most {LONGEST_BODY} lines: {long}"


def test_command_modules_hold_no_classes():
    for name in COMMAND_MODULES:
        path = PACKAGE_DIR / "cli" / f"{name}.py"
        classes = [node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)]
        assert not classes, f"cli/{name}.py holds {classes}: a class belongs in the library or a cli helper module"
