"""Faults and odd inputs: full disks, read-only folders, corrupted model files, huge and
odd images, non-finite input arrays. ``docs/reliability.md`` lists every row with its test."""

import errno
import os

import numpy as np
import pytest

from keras_skipae import io_utils

FAULT = "KERAS_SKIPAE_FAULT"


def _leftovers(folder):
    """Temporary names the atomic helpers would leave behind."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)


# --- full disk / no permission: the atomic helpers ---------------------------------------


def test_fault_hook_fails_after_n_bytes_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    io_utils.write_text(path, "previous")
    monkeypatch.setenv(FAULT, "write_fail:4")
    with pytest.raises(OSError, match=r"report\.json.*No space left") as info:
        io_utils.write_text(path, "a longer replacement")
    assert info.value.errno == errno.ENOSPC
    assert "\n" not in str(info.value)
    assert path.read_text() == "previous"
    assert _leftovers(tmp_path) == []
    # A write that fits in the budget goes through; a glob limits the fault to some names.
    io_utils.write_text(path, "ok")
    assert path.read_text() == "ok"
    monkeypatch.setenv(FAULT, "write_fail:0:*.keras")
    io_utils.write_text(path, "not a .keras file")
    assert path.read_text() == "not a .keras file"


def test_fault_hook_on_a_folder_counts_all_its_files(tmp_path, monkeypatch):
    target = tmp_path / "export"
    monkeypatch.setenv(FAULT, "write_fail:5")
    with pytest.raises(OSError, match="export"), io_utils.atomic_path(target, is_dir=True) as tmp:
        (tmp / "a").write_text("123")
        (tmp / "b").write_text("456")  # 6 bytes in all > 5
    assert list(tmp_path.iterdir()) == []


def test_fault_hook_refuses_a_malformed_value(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT, "write_fail:lots")
    with pytest.raises(ValueError, match="KERAS_SKIPAE_FAULT"):
        io_utils.write_text(tmp_path / "x.txt", "x")
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root ignores folder permissions; the fault hook covers the full-disk case",
)
def test_read_only_folder_gives_a_permission_error_naming_the_file(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "metrics.json").write_text("previous")
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=r"metrics\.json"):
            io_utils.write_text(folder / "metrics.json", "new")
        assert (folder / "metrics.json").read_text() == "previous"
        assert _leftovers(folder) == []
    finally:
        folder.chmod(0o755)
