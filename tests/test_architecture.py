"""The package's layout: the direction of its imports, no cycles, private names kept home.

``docs/ARCHITECTURE.md`` explains the layers; ``ALLOWED`` below is its rule, checked
on every import statement of every module, imports inside functions included. No import
of a private name crosses a unit (:func:`private_imports`), in the package and the launcher.
"""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keras_skipae"

# unit -> the units it may import (besides itself and the package root, whose
# lazy __init__ only holds ``__version__`` and the registration import).
_PRIMITIVES = {"faults", "io_utils", "ownership", "ops", "layers", "plotting"}
_CORE = {"models", "data", "losses", "keras_metrics"}
ALLOWED = {
    "faults": set(),  # the test-only fault-injection points
    "io_utils": {"faults"},
    "ownership": {"io_utils"},  # which outputs overwrite=True may replace
    "ops": set(),
    "layers": set(),
    "plotting": {"io_utils"},
    "models": {"layers", "ops", "losses"},  # the anomaly head's segmentation loss
    "data": {"io_utils", "ownership", "ops"},  # draws no figures (apps.synth_preview does)
    "losses": {"ops"},
    "keras_metrics": {"losses"},
    "scoring": {"layers", "ops", "models"},
    "analysis": {"ops", "models", "data", "scoring"},
    "runs": {"faults", "io_utils", "ownership", "scoring"},
    "training": _PRIMITIVES | _CORE | {"scoring", "analysis", "runs"},
    "evaluation": _PRIMITIVES | {"scoring"},
    # export: ks.export takes a run folder (runs) and reads calibration images (data)
    "export": _PRIMITIVES | {"models", "data", "scoring", "runs"},
    # prediction: a workflow over run folders, exports and the scoring
    "inference": _PRIMITIVES | {"models", "data", "scoring", "runs", "export"},
    "apps": _PRIMITIVES
    | _CORE
    | {"scoring", "analysis", "runs"}
    | {"training", "evaluation", "export", "inference"},
    # the registration module imports exactly what registers Keras classes (and io_utils,
    # whose load_keras_file gives load_model its errors naming the file)
    "_registration": {"layers", "losses", "keras_metrics", "models", "io_utils"},
    "__main__": set(),  # it runs the launcher, keras_skipae_cli, which is outside the package
}


def _modules(root: Path, name: str) -> dict[str, Path]:
    mods = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        dotted = ".".join(rel.parts)
        mods[dotted.removesuffix(".__init__")] = path
    return mods


def _imports(dotted: str, path: Path, mods: dict) -> set[str]:
    """The package modules ``dotted`` imports, anywhere in its source."""
    package = dotted if path.name == "__init__.py" else dotted.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in names:
            while target and target not in mods:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target:
                found.add(target)
    return found


def _unit(dotted: str, root_name: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package root


def violations(root: Path, allowed: dict) -> list[str]:
    """Every import that breaks ``allowed``, as ``"a.b -> c.d"`` lines."""
    mods = _modules(root, root.name)
    bad = []
    for dotted, path in sorted(mods.items()):
        src = _unit(dotted, root.name)
        if src is None:
            continue
        for target in sorted(_imports(dotted, path, mods)):
            dst = _unit(target, root.name)
            if dst is None or dst == src:
                continue
            if src not in allowed or dst not in allowed[src]:
                bad.append(f"{dotted} -> {target}")
    return bad


def cycles(root: Path) -> list[list[str]]:
    """Strongly connected components (of more than one module) of the import graph."""
    mods = _modules(root, root.name)
    graph = {}
    for dotted, path in mods.items():
        graph[dotted] = {
            t
            for t in _imports(dotted, path, mods)
            if t != dotted and not t.startswith(dotted + ".") and not dotted.startswith(t + ".")
        }
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _home_unit(dotted: str) -> str | None:
    """The unit a dotted name's first private part lives in (None: the package root)."""
    parts = dotted.split(".")
    first = next(i for i, part in enumerate(parts) if _private(part))
    if parts[0] != "keras_skipae":
        return parts[0]  # a package outside keras_skipae is one unit
    return parts[1] if first > 1 else None


def private_imports(root: Path) -> list[str]:
    """Every import of a private name (``_x``) from another unit, as ``"a.b -> c.d._x"`` lines.

    A unit is a first-level sub-package or top-level module of ``keras_skipae``, the package
    root, or a package outside it (the launcher, ``keras_skipae_cli``). ``from m import _x``,
    ``import m._x`` and ``m._x`` on a module imported from another unit all count.
    """
    mods = _modules(root, root.name)
    bad = []
    for dotted, path in sorted(mods.items()):
        own = _unit(dotted, root.name) if root.name == "keras_skipae" else root.name
        package = dotted if path.name == "__init__.py" else dotted.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names, modules = [], {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    names.append(alias.name)
                    if alias.asname:
                        modules[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    names.append(f"{base}.{alias.name}")
                    modules[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in ast.walk(tree):  # module._name, the module imported under a name
            if isinstance(node, ast.Attribute) and _private(node.attr):
                chain, value = [node.attr], node.value
                while isinstance(value, ast.Attribute):
                    chain.append(value.attr)
                    value = value.value
                if isinstance(value, ast.Name) and value.id in modules:
                    names.append(".".join([modules[value.id], *reversed(chain)]))
        for name in names:
            if name.split(".")[0] not in ("keras_skipae", "keras_skipae_cli"):
                continue
            if any(_private(part) for part in name.split(".")) and _home_unit(name) != own:
                bad.append(f"{dotted} -> {name}")
    return sorted(set(bad))


def test_no_private_name_crosses_a_unit():
    assert private_imports(PACKAGE) == []
    assert private_imports(LAUNCHER) == []


def test_private_name_checker_catches_each_form(tmp_path):
    root = tmp_path / "keras_skipae"
    _write_tree(
        root,
        {
            "__init__.py": "from keras_skipae import _registration\n",  # the root's own
            "_registration.py": "",
            "io_utils.py": "def _atomic():\n    pass\n",
            "scoring/__init__.py": "",
            "scoring/common.py": "def _check_rank():\n    pass\n",
            "scoring/scorer.py": "from .common import _check_rank\n",  # same unit: fine
            "data/__init__.py": "",
            "data/images.py": "from keras_skipae.scoring.common import _check_rank\n",
            "data/reader.py": "from keras_skipae import io_utils\nio_utils._atomic()\n",
            "runs/__init__.py": "import keras_skipae._registration\n",
            "apps/__init__.py": "",
            "apps/cli.py": "from ..scoring import common as c\nc._check_rank()\n",
        },
    )
    assert private_imports(root) == [
        "keras_skipae.apps.cli -> keras_skipae.scoring.common._check_rank",
        "keras_skipae.data.images -> keras_skipae.scoring.common._check_rank",
        "keras_skipae.data.reader -> keras_skipae.io_utils._atomic",
        "keras_skipae.runs -> keras_skipae._registration",
    ]
    launcher = tmp_path / "keras_skipae_cli"
    _write_tree(
        launcher,
        {
            "__init__.py": "from keras_skipae_cli.checks import _check_tiling\n",
            "checks.py": "def _commands():\n    from keras_skipae.apps.cli import _run\n",
        },
    )
    assert private_imports(launcher) == ["keras_skipae_cli.checks -> keras_skipae.apps.cli._run"]


def test_every_unit_is_known():
    units = {_unit(m, "keras_skipae") for m in _modules(PACKAGE, "keras_skipae")} - {None}
    assert units <= set(ALLOWED), sorted(units - set(ALLOWED))


def test_imports_point_one_way():
    assert violations(PACKAGE, ALLOWED) == []


def test_no_import_cycles():
    assert cycles(PACKAGE) == []


def _write_tree(root: Path, files: dict):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


def test_checker_catches_a_library_module_importing_upwards(tmp_path):
    # A fixture that breaks the rule: models imports data (in a function, too),
    # and scoring imports apps.
    root = tmp_path / "keras_skipae"
    _write_tree(
        root,
        {
            "__init__.py": "",
            "models/__init__.py": "",
            "models/blocks.py": "def f():\n    from keras_skipae.data import corrupt\n",
            "data/__init__.py": "def corrupt():\n    pass\n",
            "scoring/__init__.py": "from ..apps import cli\n",
            "apps/__init__.py": "",
            "apps/cli.py": "from keras_skipae import scoring\n",
        },
    )
    found = violations(root, ALLOWED)
    assert "keras_skipae.models.blocks -> keras_skipae.data" in found
    assert "keras_skipae.scoring -> keras_skipae.apps.cli" in found
    assert not any(line.startswith("keras_skipae.apps") for line in found)
    assert cycles(root) == [["keras_skipae.apps.cli", "keras_skipae.scoring"]]


@pytest.mark.slow
def test_import_loads_only_what_registers_keras_classes():
    code = (
        "import json, sys, keras_skipae\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('keras_skipae'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    for heavy in (
        "scoring",
        "analysis",
        "training",
        "evaluation",
        "export",
        "inference",
        "apps",
        "data",
    ):
        assert f"keras_skipae.{heavy}" not in loaded, heavy
    for needed in ("layers", "losses", "keras_metrics", "models.discrepancy_loss"):
        assert f"keras_skipae.{needed}" in loaded, needed


# --------------------------------------------------------------------------- the launcher

LAUNCHER = PACKAGE.parent / "keras_skipae_cli"
# Never imported by the launcher, except the one hand-off below.
_HEAVY = {"tensorflow", "keras", "numpy", "keras_skipae", "cv2", "matplotlib", "sklearn"}
_HEAVY |= {"scipy", "skimage", "tqdm", "torch", "PIL"}
HAND_OFF = ("__init__.py", "_commands", "keras_skipae.apps.cli")


def launcher_imports(root: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The launcher's imports of heavy modules: ``(violations, hand_offs)``.

    A hand-off is an import of :data:`HAND_OFF`'s module inside a function; every other
    import of a module in ``_HEAVY`` (at module level or in a function) is a violation.
    """
    bad, hand_offs = [], []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        owner = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    owner.setdefault(inner, node.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] not in _HEAVY:
                    continue
                where = (path.name, owner.get(node), target)
                if node in owner and target == HAND_OFF[2]:
                    hand_offs.append(where)
                else:
                    bad.append(f"{path.name}:{node.lineno} {target}")
    return bad, hand_offs


def test_launcher_imports_nothing_heavy_but_the_hand_off():
    bad, hand_offs = launcher_imports(LAUNCHER)
    assert bad == []
    assert hand_offs == [HAND_OFF]


def test_launcher_checker_catches_heavy_imports(tmp_path):
    root = tmp_path / "keras_skipae_cli"
    _write_tree(
        root,
        {
            "__init__.py": "import numpy as np\n"
            "def _commands():\n    from keras_skipae.apps import cli\n    import tensorflow\n",
            "parser.py": "from keras_skipae import data\nfrom keras_skipae.apps import cli\n",
        },
    )
    bad, hand_offs = launcher_imports(root)
    assert bad == [
        "__init__.py:1 numpy",
        "__init__.py:4 tensorflow",
        "parser.py:1 keras_skipae.data",
        "parser.py:2 keras_skipae.apps.cli",  # the hand-off, but at module level
    ]
    assert hand_offs == [HAND_OFF]


def test_corruptions_do_not_import_the_benchmark_defect_painters():
    folder = PACKAGE / "data" / "corruptions"
    mods = _modules(PACKAGE, "keras_skipae")
    for path in folder.glob("*.py"):
        dotted = "keras_skipae.data.corruptions." + path.stem
        dotted = dotted.removesuffix(".__init__")
        found = _imports(dotted, path, mods)
        assert not any(m.startswith("keras_skipae.data.synthetic") for m in found), path.name


@pytest.mark.slow
@pytest.mark.parametrize("preset, want", [(None, "1"), ("0", "0")])
def test_import_turns_on_onednn_unless_the_user_chose(preset, want):
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if preset is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = preset
    code = (
        "import keras_skipae, os\n"
        "from tensorflow.python.util import _pywrap_util_port as p\n"
        "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], p.IsMklEnabled())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert out[-2:] == [want, str(want == "1")]
