"""A run's training backup: :func:`read_backup` and :func:`write_backup` (kill-safe)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from keras_skipae import faults, io_utils

#: The backup's current and previous metadata (Keras' ``BackupAndRestore`` names, so
#: that backups it wrote still resume). Each names its weights file and its SHA-256.
BACKUP_METADATA = ("training_metadata.json", "training_metadata.json.bkp")
_LEGACY_WEIGHTS = "latest.weights.h5"


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_backup(folder) -> dict | None:
    """The newest complete checkpoint of a backup folder, or None.

    A checkpoint is ``training_metadata.json`` (or the previous one,
    ``training_metadata.json.bkp``) whose weights file exists and has the SHA-256 the
    metadata records; a backup written by Keras' ``BackupAndRestore`` (no checksum)
    counts as complete when its metadata reads.

    Returns:
        The metadata (``epoch``: finished epochs; ``callbacks``: callback states)
        with ``weights_path`` (a ``Path``, None when the weights are missing from a
        Keras-written backup), or None.
    """
    folder = Path(folder)
    best = None
    for name in BACKUP_METADATA:
        try:
            meta = io_utils.read_json(folder / name)
            epoch = int(meta["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        weights = folder / meta.get("weights", _LEGACY_WEIGHTS)
        if "sha256" in meta:
            if not weights.is_file() or _sha256(weights) != meta["sha256"]:
                continue
        elif not weights.is_file():
            weights = None
        if best is None or epoch > best["epoch"]:
            best = dict(meta, epoch=epoch, weights_path=weights)
    return best


def write_backup(folder, model, epoch: int, extra: dict | None = None) -> Path:
    """Saves a checkpoint of ``model`` (weights and optimizer state) after ``epoch`` epochs.

    Kill-safe and double: the weights go to a new file ``epoch-<N>.weights.h5``
    (temporary name, then rename), the current metadata becomes
    ``training_metadata.json.bkp``, the new metadata (epoch, weights file name,
    SHA-256, ``extra``) replaces ``training_metadata.json`` atomically, and only
    then are weights files that neither metadata names deleted. At every instant
    both metadata files name complete weights files.

    Args:
        folder: the backup folder (created).
        model: the model (its ``save_weights`` includes the optimizer's variables).
        epoch: the number of finished epochs.
        extra: more JSON-able metadata (callback states).

    Returns:
        The weights file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{int(epoch)}.weights.h5"
    tmp = folder / f".tmp-{os.getpid()}-{name}"
    model.save_weights(str(tmp), overwrite=True)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    digest = _sha256(tmp)
    faults.wait_point("backup-write", epoch=int(epoch))  # weights written, nothing renamed
    os.replace(tmp, folder / name)
    current, previous = (folder / n for n in BACKUP_METADATA)
    if current.is_file():
        io_utils.write_text(previous, current.read_text(encoding="utf-8"))
    meta = dict(extra or {}, epoch=int(epoch), batch=0, weights=name, sha256=digest)
    io_utils.write_json(current, meta)
    keep = set()
    for path in (current, previous):
        try:
            keep.add(io_utils.read_json(path).get("weights", _LEGACY_WEIGHTS))
        except (OSError, ValueError):
            pass
    for p in folder.glob("*.weights.h5*"):
        if p.name not in keep:
            p.unlink(missing_ok=True)
    return folder / name
