"""Export to a ``.keras`` file, refusing models that ``safe_mode`` could not load."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from keras_skipae import io_utils, ownership


def _check_no_lambda(model):

    def walk(m):
        for layer in m.layers:
            yield layer
            if hasattr(layer, "layers"):
                yield from walk(layer)

    bad = [layer.name for layer in walk(model) if isinstance(layer, keras.layers.Lambda)]
    if bad:
        raise ValueError(
            f"Model {model.name!r} has Lambda layers {bad}, which "
            "`keras.models.load_model(..., safe_mode=True)` refuses to load. Replace them "
            "with registered custom layers."
        )


def export_keras(model, path, *, overwrite: bool = False, include_optimizer: bool = False) -> Path:
    """Writes ``model`` to a ``.keras`` file that loads with ``safe_mode=True``.

    Load it with ``import keras_skipae.models`` (registers the package's
    layers; ``import keras_skipae`` alone is lazy) and
    ``keras.models.load_model(path, safe_mode=True)``.

    Args:
        model: the model.
        path: the file to write; must end in ``.keras``.
        overwrite: replace an existing file, only a ``.keras`` file this function wrote
            (it carries the marker entry ``.keras_skipae.json``).
        include_optimizer: keep the compiled optimizer's state (about twice
            the weights' size for Adam). False (default) writes the
            architecture and weights only, for inference and export.

    Returns:
        The file, a ``Path``.

    Raises:
        ValueError: ``path`` does not end in ``.keras``, or the model has
            ``Lambda`` layers (``safe_mode=True`` would refuse them).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Expected a `path` ending in '.keras'. Received: path={str(path)!r}")
    _check_no_lambda(model)
    io_utils.check_writable(path, overwrite=overwrite, what="model file")
    ownership.check_replaceable(path, "export", file=True, what="model file")
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        # Keras 3 saves a compiled model's optimizer (and clone_model compiles
        # the clone); a copy rebuilt from the config is not compiled.
        copy = model.__class__.from_config(model.get_config())
        copy.set_weights(model.get_weights())
        model = copy
    with io_utils.atomic_path(path, overwrite=overwrite, what="model file") as tmp:
        os.unlink(tmp)  # let Keras create the file
        model.save(tmp)
        ownership.mark_archive(tmp, "export")
    return path
