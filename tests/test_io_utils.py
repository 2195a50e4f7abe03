"""Atomic writes and overwrite refusal."""

import json
import os
import stat

import pytest

from keras_skipae.io_utils import atomic_path, check_writable, write_json, write_text


def test_write_refuses_to_clobber_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "report.txt"
    write_text(path, "first", overwrite=False)
    with pytest.raises(FileExistsError, match="report.txt.*overwrite=True"):
        write_text(path, "second", overwrite=False)
    assert path.read_text() == "first"
    write_text(path, "second", overwrite=True)
    assert path.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]  # no temp leftovers


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    path = tmp_path / "model.bin"
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "export"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "a").write_text("1")
        assert not target.exists()
    assert (target / "a").read_text() == "1"
    with pytest.raises(FileExistsError, match=r"The export folder '.*export' already exists"):
        check_writable(target, what="export folder")
    with atomic_path(target, is_dir=True, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "m.json", {"auroc": 0.5})
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {"auroc": 0.5}
