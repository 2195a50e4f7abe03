"""The example notebooks: in sync with their jupytext twins, committed clean, and runnable.

Each ``examples/NN_name.ipynb`` is paired with ``examples/NN_name.py`` (jupytext
percent format). The execution tests run every notebook top to bottom in a fresh
kernel (nbclient), in a temporary working folder, and check that it ran without
errors and produced its key outputs: a figure in every step of the tutorial
shape (Data, Build the model, Train, Score anomalies) and the numbers it prints.

The kernel is the interpreter running the tests: a kernel spec named
``python3`` that launches ``sys.executable`` is written to a temporary
``JUPYTER_PATH`` entry (which takes precedence over user and system kernel
specs), and the test checks ``sys.executable`` inside the kernel.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
jupytext = pytest.importorskip("jupytext")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("[0-9][0-9]_*.ipynb"))

# The tutorial steps that must each show at least one figure (markdown "## " headers);
# a notebook's EXPECTED entry may name its own ("steps").
STEPS_WITH_FIGURES = ("Data", "Build the model", "Train", "Score anomalies")

# Per notebook: regexes that must match its printed output (a float group must be
# a number in [0, 1]), and the least number of figures it shows.
EXPECTED = {
    "01_quickstart": {
        "patterns": [
            r"image AUROC (\d\.\d+)",
            r"pixel AUROC (\d\.\d+)",
            r"AUPRO@0\.3\s+(\d\.\d+)",
            r"trained 15 epochs",
            r"enc0_out\s+\(32, 32, 8\)",
        ],
        "min_figures": 8,
    },
    "02_skip_connections": {
        "patterns": [
            r"aesc\s+image AUROC (\d\.\d+)",
            r"unet\s+image AUROC (\d\.\d+)",
            r"skip layers of get_model\('aesc', skips=\(0,\), skip_scale=0\.5\): \['dec0_skip'\]",
            r"median cosine similarity",
            r"paper's trend reproduced:\s+(?:True|False)",
        ],
        "min_figures": 8,
    },
    "03_export_and_serving": {
        "patterns": [
            r"signatures: .*serving_default",
            r"max \|served - in-process\| anomaly map: (\d\.\d+e[-+]\d+|0\.0+)",
            r"is_anomalous: \[",
            r"\.keras reloaded with safe_mode=True",
            r"keras_skipae imported: False",
            r"LiteRT int8: image AUROC (\d\.\d+)",
            r"decisions agreeing: \d+%",
        ],
        "min_figures": 5,
    },
    "06_fewer_skips": {
        "patterns": [
            r"training mode \d+\.\d+, inference mode 0\.000",
            r"small-mode repair ratio unet_copy: \d+\.\d+",
            r"small-mode repair ratio aesc_sd0\.5: \d+\.\d+",
            r"dec0_skip: skip RMS / decoder RMS = \d+\.\d+",
            r"compensated weights: (\d\.\de[-+]\d+)",
            r"bench mesh dec0_skip: skip/decoder RMS \d+\.\d+ \(scale 1\)",
        ],
        "min_figures": 10,
        "check": "bench_repair_ratios",
    },
    "05_image_to_image": {
        "patterns": [
            r"denoise noisy-input PSNR \d+\.\d+ SSIM (\d\.\d+)",
            r"denoise unet PSNR \d+\.\d+ SSIM (\d\.\d+)",
            r"sr bicubic PSNR \d+\.\d+ SSIM (\d\.\d+)",
            r"sr unet PSNR \d+\.\d+",
            r"sr\s+unet\s+\(None, 16, 16, 1\) -> \(None, 32, 32, 1\)",
            r"bench sr bicubic PSNR \d+\.\d+",
        ],
        "min_figures": 7,
        "steps": ("Data", "Build the model", "Train", "Evaluate", "The benchmark"),
        "check": "image_to_image",
    },
    "04_pretrain_then_segment": {
        "patterns": [
            r"small-mode plain repair ratio \d+\.\d+, PSNR\(output, input\)",
            r"small-mode denoiser repair ratio \d+\.\d+, PSNR\(output, input\)",
            r"identical to the denoiser's: True",
            r"encoder frozen trainable\s+[\d,]+\s+non-trainable\s+[\d,]+",
            r"small-mode N=8 pretrained IoU (\d\.\d+) Dice (\d\.\d+)",
            r"small-mode N=32 scratch IoU (\d\.\d+) Dice (\d\.\d+)",
            r"bench N=128 denoiser IoU (\d\.\d+) Dice (\d\.\d+)",
        ],
        "min_figures": 9,
        "steps": (
            "Data",
            "Build the model",
            "Pretrain",
            "Copy or repair",
            "Fine-tune",
            "The benchmark",
        ),
        "check": "transfer",
    },
}

SKIPS_JSON = EXAMPLES.parent / "bench" / "results" / "skips.json"


def _check_bench_repair_ratios(text: str) -> None:
    """Notebook 06 prints every repair ratio of the committed benchmark table, unchanged."""
    import json
    import math

    table = json.loads(SKIPS_JSON.read_text())["results"]
    printed = {
        (cat, setting): float(value)
        for cat, setting, value in re.findall(r"bench repair ratio (\S+) (\S+): (\S+)", text)
    }
    expected = {(c, s): r["repair_ratio"] for c, rows in table.items() for s, r in rows.items()}
    assert set(printed) == set(expected), sorted(set(printed) ^ set(expected))
    for key, value in printed.items():
        assert math.isfinite(value) and value > 0, (key, value)
        assert value == pytest.approx(expected[key], abs=1e-4), (key, value, expected[key])


IMAGE_TO_IMAGE_JSON = EXAMPLES.parent / "bench" / "results" / "image_to_image.json"


def _check_image_to_image(text: str) -> None:
    """Notebook 05: the U-Net denoises (its PSNR is above the noisy input's), the
    super-resolution and bicubic PSNRs are finite and printed in the same table, and
    the benchmark numbers it prints are those of the committed JSON."""
    import json
    import math

    small = {
        (task, method): (float(psnr), float(ssim))
        for task, method, psnr, ssim in re.findall(
            r"^(denoise|sr) (\S+) PSNR (\S+) SSIM (\S+)$", text, flags=re.M
        )
    }
    for key in [("denoise", "noisy-input"), ("denoise", "unet"), ("sr", "bicubic"), ("sr", "unet")]:
        assert key in small, (key, sorted(small))
        assert all(math.isfinite(v) for v in small[key]), (key, small[key])
    assert small["denoise", "unet"][0] > small["denoise", "noisy-input"][0], small

    table = json.loads(IMAGE_TO_IMAGE_JSON.read_text())["results"]
    printed = {
        (task, method): (float(psnr), float(ssim))
        for task, method, psnr, ssim in re.findall(r"bench (\S+) (\S+) PSNR (\S+) SSIM (\S+)", text)
    }
    expected = {
        (task, method.replace(" ", "-")): (r["psnr"], r["ssim"])
        for task, rows in table.items()
        for method, r in rows.items()
    }
    assert set(printed) == set(expected), sorted(set(printed) ^ set(expected))
    for key, (psnr, ssim) in printed.items():
        assert psnr == pytest.approx(expected[key][0], abs=1e-4), (key, psnr, expected[key])
        assert ssim == pytest.approx(expected[key][1], abs=1e-4), (key, ssim, expected[key])


TRANSFER_JSON = EXAMPLES.parent / "bench" / "results" / "transfer.json"


def _check_transfer(text: str) -> None:
    """Notebook 04: every printed IoU/Dice pair has 0 <= IoU <= Dice <= 1, small mode
    reports both initialisations for each N, and the benchmark numbers it prints are
    those of the committed JSON."""
    import json

    pairs = re.findall(r"IoU (\d+\.\d+) Dice (\d+\.\d+)", text)
    assert pairs
    for iou, dice in pairs:
        assert 0.0 <= float(iou) <= float(dice) <= 1.0, (iou, dice)
    small = set(re.findall(r"small-mode N=(\d+) (\S+) IoU", text))
    assert small == {(n, init) for n in ("8", "32") for init in ("pretrained", "scratch")}, small

    bench = json.loads(TRANSFER_JSON.read_text())
    printed = {
        (n, init): (float(iou), float(dice))
        for n, init, iou, dice in re.findall(r"bench N=(\d+) (\S+) IoU (\S+) Dice (\S+)", text)
    }
    expected = {
        (n, init): (m["iou"], m["dice"])
        for n, per_init in bench["means"].items()
        for init, m in per_init.items()
    }
    assert set(printed) == set(expected), sorted(set(printed) ^ set(expected))
    for key, (iou, dice) in printed.items():
        assert iou == pytest.approx(expected[key][0], abs=1e-4), (key, iou, expected[key])
        assert dice == pytest.approx(expected[key][1], abs=1e-4), (key, dice, expected[key])
    pre = {
        name: (float(ratio), float(psnr))
        for name, ratio, psnr in re.findall(
            r"bench pretraining (\S+) repair ratio (\S+) PSNR\(output, input\) (\S+) dB", text
        )
    }
    assert set(pre) == set(bench["pretraining_means"]) == {"plain", "denoiser"}, pre
    for name, (ratio, psnr) in pre.items():
        m = bench["pretraining_means"][name]
        assert ratio == pytest.approx(m["repair_ratio"], abs=1e-4), (name, ratio, m)
        assert psnr == pytest.approx(m["psnr_output_vs_input_defective"], abs=1e-4), (name, m)


CHECKS = {
    "bench_repair_ratios": _check_bench_repair_ratios,
    "image_to_image": _check_image_to_image,
    "transfer": _check_transfer,
}


def _twin(notebook: Path) -> Path:
    return notebook.with_suffix(".py")


def _cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def test_every_notebook_has_a_twin_and_expectations():
    assert NOTEBOOKS, f"no notebooks found in {EXAMPLES}"
    scripts = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))
    assert [p.stem for p in scripts] == [p.stem for p in NOTEBOOKS]
    assert sorted(EXPECTED) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_twin_in_sync(path):
    """The .ipynb and its .py twin hold the same cells, and the .ipynb has no outputs."""
    from_ipynb = jupytext.read(path)
    from_py = jupytext.read(_twin(path))
    assert _cells(from_ipynb) == _cells(from_py), (
        f"{path.name} and {_twin(path).name} differ: run "
        f"`jupytext --sync {_twin(path)}` (or --to ipynb) after editing the script."
    )
    raw = nbformat.read(path, as_version=4)
    assert raw.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert raw.metadata["kernelspec"]["name"] == "python3"
    for cell in raw.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: commit notebooks without outputs"
            assert cell.execution_count is None, f"{path.name}: commit notebooks without outputs"
    # The tutorial shape of DESIGN.md.
    headers = [
        line[3:].strip()
        for cell in raw.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("## ")
    ]
    steps = EXPECTED.get(path.stem, {}).get("steps", STEPS_WITH_FIGURES)
    for step in ("Introduction", "Setup", *steps):
        assert step in headers, f"{path.name} lacks a '## {step}' section"


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory, monkeypatch_module):
    """A ``python3`` kernel spec running this interpreter, first on JUPYTER_PATH."""
    from ipykernel.kernelspec import write_kernel_spec

    root = tmp_path_factory.mktemp("jupyter")
    write_kernel_spec(root / "kernels" / "python3")
    monkeypatch_module.setenv("JUPYTER_PATH", str(root))
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def _n_figures(cell) -> int:
    return sum(1 for out in cell.get("outputs", []) if "image/png" in out.get("data", {}))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, kernel_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    # The notebooks write to tempfile.mkdtemp() folders: keep them under tmp_path.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    notebook = nbformat.read(path, as_version=4)
    # An extra last cell reports the kernel's interpreter.
    notebook.cells.append(
        nbformat.v4.new_code_cell("import sys\nprint('KERNEL-EXECUTABLE', sys.executable)")
    )
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,  # per cell
        startup_timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working folder
    )
    before = sorted(p.name for p in EXAMPLES.iterdir())
    start = time.monotonic()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.monotonic() - start

    errors = [
        out
        for cell in notebook.cells
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]
    assert not errors, errors
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    text = "\n".join(_outputs_text(cell) for cell in code)
    assert "Traceback" not in text

    kernel_exe = re.search(r"KERNEL-EXECUTABLE (.+)", _outputs_text(code[-1])).group(1).strip()
    assert Path(kernel_exe).resolve() == Path(sys.executable).resolve()

    # A figure in every step, and enough of them overall.
    figures_per_step: dict[str, int] = {}
    step = None
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("## "):
                    step = line[3:].strip()
        elif step is not None:
            figures_per_step[step] = figures_per_step.get(step, 0) + _n_figures(cell)
    for name in EXPECTED[path.stem].get("steps", STEPS_WITH_FIGURES):
        assert figures_per_step.get(name, 0) >= 1, f"no figure in '{name}': {figures_per_step}"
    expected = EXPECTED[path.stem]
    assert sum(_n_figures(cell) for cell in code) >= expected["min_figures"]

    for pattern in expected["patterns"]:
        match = re.search(pattern, text)
        assert match, f"{path.name}: no output matches {pattern!r}"
        for group in match.groups():
            assert 0.0 <= float(group) <= 1.0, (pattern, group)
    if "check" in expected:
        CHECKS[expected["check"]](text)

    # The notebook wrote nothing next to itself, only in temporary folders.
    assert sorted(p.name for p in EXAMPLES.iterdir()) == before
    assert any((tmp_path / "tmp").iterdir()), "the notebook did not use tempfile"
    print(f"{path.name}: {seconds:.1f} s")
