"""The ownership rule of ``overwrite=True`` (keras_skipae.ownership), and every command using it.

Each refusal leaves the whole tree as it was: ``tree_digest`` (conftest; SHA-256 over every
relative path and file content) is compared before and after. Most commands are called as library
functions, which refuse before loading a model; the issue's reproductions also go through
the launcher in process (``keras_skipae_cli.main``).
"""

import json
import os
import re
import zipfile
from pathlib import Path

import pytest
from conftest import make_tiny_model
from conftest import tree_digest as digest

from keras_skipae import ownership
from keras_skipae.ownership import MARKER, check_replaceable, mark_archive, mark_owned, owner

CONFIG = {"model": {"name": "aesc"}, "data": {}, "corruption": None, "training": {"seed": 0}}


def fake_run(folder, *, marked=True) -> Path:
    """A run folder as ``train`` leaves it (the model file is a stand-in: nothing loads it)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "model.keras").write_bytes(b"model bytes")
    (folder / "history.csv").write_text("epoch,loss\n0,1.0\n")
    if marked:
        mark_owned(folder, "run")
    return folder


def owned(folder, kind, *names) -> Path:
    """A folder marked as ``kind`` holding the files ``names``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    mark_owned(folder, kind)
    return folder


# --------------------------------------------------------------------------- the rule


def test_marker_records_kind_and_version(tmp_path):
    from keras_skipae import __version__

    marker = mark_owned(tmp_path, "export")
    assert json.loads(marker.read_text()) == {"kind": "export", "version": __version__}
    assert owner(tmp_path) == "export"
    assert owner(tmp_path / "missing") is None
    with pytest.raises(ValueError, match="Received: kind='model'"):
        mark_owned(tmp_path, "model")


def test_a_folder_the_package_made_is_replaceable(tmp_path):
    check_replaceable(tmp_path / "missing", "discrepancy")  # nothing to replace
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", "discrepancy")  # nothing to lose
    folder = owned(tmp_path / "d", "discrepancy", "discrepancy.json", ".discrepancy.csv.tmp-1")
    (folder / ".DS_Store").write_bytes(b"finder")
    check_replaceable(folder, "discrepancy", allowed=["discrepancy.*"])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: (p.mkdir(), (p / "discrepancy.json").write_text("{}")), "no .keras_skipae.json"),
        (lambda p: owned(p, "export", "discrepancy.json"), "is a keras_skipae export, not a"),
        (lambda p: owned(p, "discrepancy", "discrepancy.json", "NOTES.txt"), r"\('NOTES.txt'\)"),
        (lambda p: owned(p, "discrepancy", "a/config.json"), r"holds the run folder .*a'"),
        (lambda p: p.write_text("a file"), "is a file, not a folder"),
        (
            lambda p: (p.mkdir(), (p / MARKER).write_text("{not json")),
            "marker .keras_skipae.json is damaged",
        ),
        (lambda p: (p.mkdir(), (p / MARKER).write_text("[1, 2]")), "names no kind"),
    ],
    ids=["no_marker", "other_kind", "foreign_file", "ancestor_of_run", "file", "damaged", "list"],
)
def test_refusals_name_the_folder_and_why(tmp_path, make, match):
    target = tmp_path / "out"
    make(target)
    before = digest(tmp_path)
    with pytest.raises(FileExistsError, match=rf"Refusing to replace the .*'{target}': .*{match}"):
        check_replaceable(target, "discrepancy", allowed=["discrepancy.json", "a"])
    assert digest(tmp_path) == before


def test_an_ancestor_of_a_marked_run_is_refused(tmp_path):
    demo = owned(tmp_path / "demo", "demo", "report/report.md")
    fake_run(demo / "runs" / "ae")
    check_replaceable(demo, "demo", allowed=["runs", "report"], own=["runs/ae"])
    fake_run(demo / "runs" / "mine", marked=True)
    (demo / "runs" / "mine" / "config.json").unlink()  # a run known by its marker alone
    with pytest.raises(FileExistsError, match="holds the run folder .*mine'"):
        check_replaceable(demo, "demo", allowed=["runs", "report"], own=["runs/ae"])


@pytest.mark.parametrize("relation", ["is", "contains", "lies inside"])
def test_inputs_are_never_replaced(tmp_path, relation):
    run = fake_run(tmp_path / "runs" / "r1")
    target = {"is": run, "contains": run.parent, "lies inside": run / "evaluation"}[relation]
    if relation == "lies inside":
        owned(target, "evaluation", "metrics.json")
    before = digest(tmp_path)
    with pytest.raises(FileExistsError, match=f"it {relation} '{run}', which this command reads"):
        check_replaceable(target, "evaluation", inputs=[None, run], allowed=["metrics.json"])
    assert digest(tmp_path) == before


def test_inputs_are_compared_by_their_real_path(tmp_path):
    run = fake_run(tmp_path / "r1")
    os.symlink(run, tmp_path / "link")
    with pytest.raises(FileExistsError, match="it is .*link'"):
        check_replaceable(run, "run", inputs=[tmp_path / "link"], allowed=["*"])
    with pytest.raises(FileExistsError, match="is a symbolic link"):
        check_replaceable(tmp_path / "link", "run", allowed=["*"])


@pytest.mark.parametrize(
    "kind, files, allowed",
    [
        ("run", {"config.json": json.dumps(CONFIG), "model.keras": "m"}, ["*.json", "*.keras"]),
        ("evaluation", {"metrics.json": '{"image_auroc": 1, "settings": {}}'}, ["metrics.json"]),
        ("discrepancy", {"discrepancy.json": '{"runs": {}, "results": {}}'}, ["discrepancy.*"]),
        ("export", {"assets/keras_skipae.json": '{"format": 1, "scoring": {}}'}, ["assets"]),
        ("predictions", {"predictions.csv": "path,score,decision,x\n"}, ["predictions.csv"]),
        ("dataset", {".keras_skipae_synthetic": "made", "wood/x.png": "x"}, ["wood"]),
        ("demo", {".keras_skipae_demo": "made", "report/report.md": "r"}, ["report"]),
    ],
)
def test_folders_of_version_0_1_without_the_marker(tmp_path, kind, files, allowed):
    folder = tmp_path / kind
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    check_replaceable(folder, kind, allowed=allowed)  # legacy: accepted
    (folder / "NOTES.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match="does not write there"):
        check_replaceable(folder, kind, allowed=allowed)
    (folder / "NOTES.txt").unlink()
    main = ownership.LEGACY[kind][0]
    (folder / main).write_text("[]" if main.endswith("json") else "other,columns\n")
    if kind in ("dataset", "demo"):
        (folder / main).unlink()
    with pytest.raises(FileExistsError, match="no .keras_skipae.json marker"):
        check_replaceable(folder, kind, allowed=allowed)


def test_a_keras_file_is_replaced_only_with_its_marker_entry(tmp_path):
    keras_file = tmp_path / "m.keras"
    with zipfile.ZipFile(keras_file, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(FileExistsError, match="not a file keras_skipae wrote"):
        check_replaceable(keras_file, "export", file=True)
    mark_archive(keras_file, "export")
    check_replaceable(keras_file, "export", file=True)
    with pytest.raises(FileExistsError, match="is a folder, not a file"):
        check_replaceable(tmp_path, "export", file=True)
    with pytest.raises(FileExistsError, match="lies inside"):
        check_replaceable(keras_file, "export", file=True, inputs=[tmp_path])


# --------------------------------------------------------------------------- train


def test_train_overwrite_refuses_a_folder_it_did_not_make(tmp_path):
    from keras_skipae.runs import RunFolder

    other = dict(CONFIG, training={"seed": 1})
    logs_only = tmp_path / "logs_only"  # only run entries, but no marker and no config
    (logs_only / "logs").mkdir(parents=True)
    (logs_only / "logs" / "events").write_text("e")
    parent = tmp_path / "runs"  # an ancestor of runs, with the user's notes
    fake_run(parent / "r1")
    (parent / "NOTES.txt").write_text("mine")
    run = fake_run(tmp_path / "r")
    fake_run(run / "evaluation" / "nested")  # a run inside a run's entry
    for folder, match in [
        (logs_only, "no .keras_skipae.json marker"),
        (parent, r"\('NOTES.txt', 'r1'\)"),
        (run, "holds the run folder .*nested'"),
    ]:
        before = digest(tmp_path)
        with pytest.raises(FileExistsError, match=match):
            RunFolder(folder).clear_or_resume(other, overwrite=True, resume=True)
        assert digest(tmp_path) == before
    (parent / "NOTES.txt").unlink()
    with pytest.raises(FileExistsError, match=r"\('r1'\)"):
        RunFolder(parent).clear_or_resume(other, overwrite=True, resume=True)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_overwrite_refuses_folders_it_did_not_make(tmp_path):
    from keras_skipae.evaluation import evaluate
    from keras_skipae.evaluation.evaluate import check_output_folder

    user = tmp_path / "user"
    user.mkdir()
    (user / "metrics.json").write_text("my own metrics")
    (user / "NOTES.txt").write_text("mine")
    before = digest(tmp_path)
    with pytest.raises(FileExistsError, match=r"evaluation folder .*\('NOTES.txt'\)"):
        evaluate(None, [], out_dir=user, overwrite=True)  # refused before any scoring
    (user / "NOTES.txt").unlink()
    with pytest.raises(FileExistsError, match="no .keras_skipae.json marker"):
        evaluate(None, [], out_dir=user, overwrite=True)
    run = fake_run(tmp_path / "run")
    (run / "metrics.json").write_text("{}")
    before = digest(tmp_path)
    with pytest.raises(FileExistsError, match="contains .*config.json', which this command"):
        check_output_folder(run, inputs=[run / "config.json", run / "model.keras"])
    assert digest(tmp_path) == before


# --------------------------------------------------------------------------- export


def test_export_run_refuses_the_run_its_parent_and_a_users_folder(tmp_path):
    from keras_skipae.apps.workflows import export_run

    parent = tmp_path / "runs"
    run = fake_run(parent / "r1")
    fake_run(parent / "r2")
    (parent / "NOTES.txt").write_text("the user's notes")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "saved_model.pb").write_bytes(b"the user's own SavedModel")
    cases = [
        (run, {}, "it is .*r1', which this command reads"),
        (parent, {}, "it contains .*r1', which this command reads"),
        (run / "model.keras", {"format": "keras"}, "it lies inside .*r1'"),
        (user, {}, "no .keras_skipae.json marker"),
    ]
    for out, kw, match in cases:
        before = digest(tmp_path)
        with pytest.raises(FileExistsError, match=match):
            export_run(run, out, overwrite=True, **kw)
        assert digest(tmp_path) == before


@pytest.mark.slow
def test_export_overwrite_replaces_only_its_own_exports(tmp_path):
    from keras_skipae.export import export_keras, export_saved_model
    from keras_skipae.export.saved_model import EXPORT_ENTRIES

    model = make_tiny_model("ae")
    path = export_keras(model, tmp_path / "m.keras")
    assert owner(path) == "export"
    export_keras(model, path, overwrite=True)
    import keras_skipae

    assert keras_skipae.load_model(path).count_params() == model.count_params()
    plain = tmp_path / "plain.keras"
    model.save(plain)
    user = owned(tmp_path / "sm", "export", "NOTES.txt")
    before = digest(tmp_path)
    with pytest.raises(FileExistsError, match="model file .*plain.keras'.*no .keras_skipae.json"):
        export_keras(model, plain, overwrite=True)
    with pytest.raises(FileExistsError, match=r"export folder .*\('NOTES.txt'\)"):
        export_saved_model(model, user, overwrite=True, verify=False)
    assert digest(tmp_path) == before
    (user / "NOTES.txt").unlink()
    export_saved_model(model, user, overwrite=True, verify=False)
    assert owner(user) == "export" and (user / "saved_model.pb").is_file()
    (user / MARKER).unlink()  # as version 0.1 wrote it: recognised by its settings file
    check_replaceable(user, "export", allowed=EXPORT_ENTRIES)


# --------------------------------------------------------------------------- discrepancy


def test_discrepancy_refuses_a_users_folder_and_the_runs(tmp_path):
    from keras_skipae.apps.workflows import compare_runs

    a, b = fake_run(tmp_path / "a"), fake_run(tmp_path / "b")
    user = tmp_path / "USERDIR"
    user.mkdir()
    (user / "thesis.tex").write_text("the user's own file")
    for out, match in [
        (user, r"\('thesis.tex'\)"),
        (a, "it contains .*config.json', which this command reads"),
        (tmp_path, "it contains"),
    ]:
        before = digest(tmp_path)
        with pytest.raises(FileExistsError, match=match):
            compare_runs(a, b, out_dir=out, overwrite=True)
        assert digest(tmp_path) == before


# --------------------------------------------------------------------------- predict


def test_predict_overwrite_refuses_folders_it_did_not_make(tmp_path):
    from keras_skipae.apps.predict import predict_to_folder

    run = fake_run(tmp_path / "run")
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"png")
    user = tmp_path / "user"
    user.mkdir()
    (user / "predictions.csv").write_text("path,score,decision\n")
    (user / "report.docx").write_bytes(b"mine")
    made = owned(tmp_path / "made", "predictions", "predictions.csv", "maps/00000_a.png")
    fake_run(made / "maps" / "kept")
    for out, match in [
        (user, r"predictions folder .*\('report.docx'\)"),
        (images, "it contains .*a.png', which this command reads"),
        (run / "predictions", "it lies inside .*run', which this command reads"),
        (made, "holds the run folder .*kept'"),
    ]:
        out.mkdir(exist_ok=True)
        (out / "predictions.csv").touch()
        before = digest(tmp_path)
        with pytest.raises(FileExistsError, match=match):
            predict_to_folder(run, [images / "a.png"], out, overwrite=True)
        assert digest(tmp_path) == before


# --------------------------------------------------------------------------- synth, demo


def test_synth_overwrite_refuses_a_dataset_holding_a_run(tmp_path):
    from keras_skipae.data.synthetic import make_dataset

    kw = dict(categories=["mesh"], image_size=16, n_train=1, n_test_good=1, n_test_defect=0)
    root = make_dataset(tmp_path / "data", **kw)
    assert owner(root) == "dataset"
    fake_run(root / "mesh" / "my_run")
    before = digest(tmp_path)
    with pytest.raises(FileExistsError, match="dataset folder .*holds the run folder .*my_run'"):
        make_dataset(root, overwrite=True, **kw)
    assert digest(tmp_path) == before
    project = tmp_path / "project"
    fake_run(project / "r")
    with pytest.raises(FileExistsError, match=r"\('r'\)"):
        make_dataset(project, overwrite=True, **kw)


def test_demo_overwrite_refuses_foreign_files_and_runs(tmp_path):
    from keras_skipae.apps import demo

    out = tmp_path / "demo"
    demo._prepare_out(out, overwrite=False)
    assert owner(out) == "demo"
    (out / "report").mkdir()
    (out / "notes.txt").write_text("kept")
    fake_run(out / "runs" / "ae")
    before = digest(tmp_path)
    with pytest.raises(FileExistsError, match=r"demo folder .*\('notes.txt'\)"):
        demo._prepare_out(out, overwrite=True)
    (out / "notes.txt").unlink()
    fake_run(out / "runs" / "extra")
    before = digest(tmp_path)
    with pytest.raises(FileExistsError, match="holds the run folder .*extra'"):
        demo._prepare_out(out, overwrite=True)
    assert digest(tmp_path) == before
    (out / "runs" / "extra" / "config.json").unlink()
    (out / "runs" / "extra" / MARKER).unlink()
    demo._prepare_out(out, overwrite=True)  # the demo's own runs are replaced
    assert sorted(p.name for p in out.iterdir()) == [MARKER]


# --------------------------------------------------------------------------- the CLI


def test_cli_export_and_discrepancy_refuse_and_keep_every_file(tmp_path, capsys):
    """The issue's reproductions, through the launcher: exit 1, one line, the tree unchanged."""
    import keras_skipae_cli as cli

    parent = tmp_path / "runs"
    run = fake_run(parent / "r1")
    fake_run(parent / "r2")
    (parent / "NOTES.txt").write_text("the user's notes")
    user = tmp_path / "USERDIR"
    user.mkdir()
    (user / "thesis.tex").write_text("the user's own file")
    for argv, match in [
        (["export", str(run), str(run), "--overwrite"], "r1', which this command reads"),
        (["export", str(run), str(parent), "--overwrite"], "contains .*r1'"),
        (
            ["discrepancy", str(run), str(parent / "r2"), "--out", str(user), "--overwrite"],
            "thesis.tex",
        ),
    ]:
        before = digest(tmp_path)
        assert cli.main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"keras-skipae {argv[0]}: error: Refusing")
        assert re.search(match, err[0]), err[0]
        assert digest(tmp_path) == before
