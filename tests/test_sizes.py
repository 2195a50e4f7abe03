"""Size limits of the code in keras_skipae/ and keras_skipae_cli/.

* a module: at most :data:`MODULE_LINES` lines (the file's lines, all counted);
* a function or method: at most :data:`FUNCTION_LINES` lines of code, from its ``def`` to
  its last line, without the lines of the docstrings inside it (a long docstring documents
  the function, it does not make it harder to read);
* a class: at most :data:`CLASS_LINES` lines, counted the same way (its own and its methods'
  docstrings left out).

A unit over its limit is listed in :data:`EXCEPTIONS`, by its qualified name
(``package.module.Class.method``), with the reason; the list is kept small, and a listed
unit that no longer exceeds its limit must be taken off it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("keras_skipae", "keras_skipae_cli")

MODULE_LINES = 500
FUNCTION_LINES = 80
CLASS_LINES = 250

#: qualified name -> why it may exceed its limit.
EXCEPTIONS: dict[str, str] = {
    "keras_skipae.training.train.train": (
        "the public ks.train: a signature of 36 documented keywords (about 40 lines) ahead "
        "of a body that hands each step to the task and the training modules"
    ),
    "keras_skipae_cli.parser._add_train": (
        "the declaration of `keras-skipae train`'s flags, one add_argument per keyword of "
        "ks.train: a flat list with no logic to split"
    ),
}


def _docstring_lines(node) -> int:
    """The lines of the docstrings of ``node`` and of the functions and classes in it."""
    total = 0
    for inner in ast.walk(node):
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = inner.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                total += body[0].end_lineno - body[0].lineno + 1
    return total


def _units(tree, prefix):
    """``(qualified name, kind, lines of code)`` of every function and class in ``tree``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}.{node.name}"
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            lines = node.end_lineno - node.lineno + 1 - _docstring_lines(node)
            yield name, kind, lines
            yield from _units(node, name)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            yield from _units(node, prefix)


def measure() -> list[tuple[str, str, int]]:
    """``(qualified name, kind, lines)`` of every module, class and function."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            dotted = dotted.removesuffix(".__init__")
            text = path.read_text(encoding="utf-8")
            found.append((dotted, "module", len(text.splitlines())))
            found.extend(_units(ast.parse(text), dotted))
    return found


LIMITS = {"module": MODULE_LINES, "function": FUNCTION_LINES, "class": CLASS_LINES}


def test_no_unit_is_over_its_size_limit():
    over = [
        f"{name} ({kind}): {lines} lines > {LIMITS[kind]}"
        for name, kind, lines in measure()
        if lines > LIMITS[kind] and name not in EXCEPTIONS
    ]
    assert not over, "\n".join(over)


def test_every_exception_is_still_needed_and_says_why():
    sizes = {name: (kind, lines) for name, kind, lines in measure()}
    for name, reason in EXCEPTIONS.items():
        assert reason.strip(), name
        assert name in sizes, f"{name} is gone: take it off EXCEPTIONS"
        kind, lines = sizes[name]
        assert lines > LIMITS[kind], f"{name} is within its limit now: take it off EXCEPTIONS"


def test_the_counts():
    """The docstrings are left out of a function's count, the rest is counted."""
    source = (
        "class A:\n"
        '    """Doc\n    string."""\n'
        "    def f(self):\n"
        '        """One\n        two\n        three."""\n'
        "        x = 1\n"
        "        return x\n"
    )
    units = dict((name, lines) for name, _, lines in _units(ast.parse(source), "m"))
    assert units == {"m.A": 9 - 5, "m.A.f": 6 - 3}
