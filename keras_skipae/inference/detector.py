"""Predict: a trained model, its scoring settings and threshold, applied to new images.

:class:`Detector` loads what training and export wrote (a run folder, an exported
SavedModel or a ``.keras`` file) and scores images from files, folders, arrays or a
``tf.data`` dataset, one batch at a time, so that a folder of 100,000 images never
sits in memory. Scoring is :func:`keras_skipae.scoring.compute` (through
:func:`~keras_skipae.scoring.make_scorer`, or the SavedModel's ``serving_default``,
which is the same computation traced), so predictions equal ``evaluate``'s scores.

Per image, a :class:`Prediction` holds the score, the decision (``score >=
threshold``; None without a threshold), the anomaly map resized back to the image's
original resolution, the reconstruction (at the model's input size) and the input
image at its original resolution.

A model trained on tiles (``tile_size`` in the run's ``config.json``, or a SavedModel
exported with ``tile_size=``) scores every image at its full resolution, tile by tile
(:func:`keras_skipae.scoring.compute_tiled`, or the SavedModel's ``serving_tiled``):
nothing is resized, the map and the reconstruction come out at the image's resolution,
and images smaller than a tile are bad inputs.

Example:
    >>> import keras_skipae as ks
    >>> det = ks.Detector.load("runs/carpet")
    >>> for p in det.predict("incoming/"):
    ...     print(p.path, p.score, p.is_anomalous)
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_skipae import io_utils
from keras_skipae.data.datasets import (
    DEFAULT_MAX_PIXELS,
    DatasetError,
    check_max_pixels,
    resize_image,
)
from keras_skipae.data.reader import check_workers, read_images
from keras_skipae.export.edge import edge_format, read_edge_settings
from keras_skipae.export.saved_model import (
    SETTINGS_FILE,
    XLA_SIGNATURE,
    check_threshold,
    load_saved_model,
    read_settings,
)
from keras_skipae.inference.scorers import EdgeScorer, KerasScorer, SavedModelScorer
from keras_skipae.ops.device import MeasuredJit
from keras_skipae.ops.tiling import check_tiling
from keras_skipae.runs import COLOR_MODES, RunFolder
from keras_skipae.scoring import (
    DEFAULT_TILE_BATCH,
    ScoringConfig,
    float32_model,
    is_anomalous,
    make_scorer,
    make_tiled_scorer,
    to_float_images,
)

#: How a bad file is handled: raise a DatasetError, skip it with a warning, or report
#: it as a Prediction whose ``error`` holds the message (and whose results are None).
ON_ERROR = ("raise", "skip", "report")

#: channels -> colour mode (the inverse of :data:`keras_skipae.runs.COLOR_MODES`).
_COLOR_MODES = {c: m for m, c in COLOR_MODES.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class Prediction:
    """The result for one image.

    Attributes:
        index: the image's position in the input (0-based, bad files included).
        path: the source file, or None for arrays and datasets without paths.
        score: the image score (of the model-resolution map, as ``evaluate``'s).
        is_anomalous: ``score >= threshold``; None without a threshold.
        anomaly_map: float32 ``[H, W]`` at the image's original resolution (the
            model-resolution map resized bilinearly, antialiased when shrinking).
        reconstruction: float32 ``[h, w, C]`` at the model's input size (with tiling:
            ``[H, W, C]``, blended from the tiles).
        image: the input, float32 ``[H, W, C]`` in [0, 1] at its original resolution.
        error: for a bad file (``on_error="report"``): the message; everything above
            but ``index`` and ``path`` is then None.
    """

    index: int
    path: str | None
    score: float | None
    is_anomalous: bool | None
    anomaly_map: np.ndarray | None
    reconstruction: np.ndarray | None
    image: np.ndarray | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was scored (False for a reported bad file)."""
        return self.error is None


class Predictions(Iterator):
    """An iterator of :class:`Prediction` that scores one batch at a time.

    Attributes:
        total: the number of images (bad files included) when known in advance
            (files, folders, arrays); None for a ``tf.data`` dataset.
    """

    def __init__(self, iterator: Iterator[Prediction], total: int | None):
        self._iterator = iterator
        self.total = total

    def __next__(self) -> Prediction:
        return next(self._iterator)

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("The number of predictions of a tf.data dataset is not known.")
        return self.total


@dataclasses.dataclass
class _Item:
    index: int
    path: str | None
    image: np.ndarray | None = None  # float32 [H, W, C] at the original resolution
    error: str | None = None
    resized: np.ndarray | None = None  # the image at the model's size, when read so


class Detector:
    """A model with its scoring settings, input size and (optional) threshold.

    Build one with :meth:`load`. ``predict`` returns a :class:`Predictions` iterator.

    Attributes:
        source: what was loaded (a path, or None).
        kind: ``"run"``, ``"saved_model"``, ``"keras"``, ``"model"``, or the edge
            formats ``"litert"``, ``"onnx"`` and ``"openvino"``.
        scoring: the :class:`~keras_skipae.scoring.ScoringConfig` in use.
        threshold: the production threshold (None: ``is_anomalous`` is None).
        threshold_source: where the threshold came from (a file, ``"explicit"``), or
            None; :attr:`threshold_note` says why there is none, when that is known.
        image_size: the model's ``(height, width)``: every image is resized to it
            (with tiling: the tile's size; images are not resized).
        channels: 1 (grayscale) or 3 (RGB); files are read in that colour mode.
        model: the Keras model that scores (None for a SavedModel or an edge export): a model trained in
            mixed precision is replaced by its float32 twin
            (:func:`~keras_skipae.scoring.float32_model`), as in ``evaluate`` and the export.
        tiling: ``(tile_size, tile_overlap)`` when images are scored tile by tile at
            full resolution, else None.
    """

    def __init__(
        self,
        model=None,
        *,
        scoring: ScoringConfig | dict | None = None,
        threshold: float | None = None,
        image_size=None,
        source=None,
        kind: str = "model",
        threshold_source: str | None = None,
        threshold_note: str | None = None,
        jit_compile="auto",
        tile_size: int | None = None,
        tile_overlap: int = 0,
        tile_batch_size: int = DEFAULT_TILE_BATCH,
        _served=None,
        _channels: int | None = None,
        _backend=None,
    ):
        if model is None and _served is None and _backend is None:
            raise ValueError("Expected a Keras `model`. Received: model=None")
        self.tiling = _check_detector_tiling(tile_size, tile_overlap)
        self.model = None if model is None else float32_model(model)  # scores in float32
        model = self.model
        self.scoring = ScoringConfig.resolve(scoring, caller="Detector")
        self.threshold = check_threshold(threshold)
        self.threshold_source = (
            (threshold_source or "explicit") if self.threshold is not None else None
        )
        self.threshold_note = threshold_note
        self.source = None if source is None else str(source)
        self.kind = kind
        if model is not None:
            shape = tuple(model.input_shape[1:])
            h, w, channels = shape
            self.image_size = _resolve_size(image_size, (h, w), self.source)
            self.channels = int(channels)
            self._scorer = make_scorer(
                model,
                self.scoring,
                image_shape=(*self.image_size, self.channels),
                jit_compile=jit_compile,
            )
            self._backend = KerasScorer(self._scorer)
            if self.tiling is not None:
                if tuple(self.image_size) != (self.tiling[0],) * 2:
                    raise ValueError(
                        f"A model that scores {self.tiling[0]}x{self.tiling[0]} tiles must take "
                        f"images of that size. Received: a model taking "
                        f"{self.image_size[0]}x{self.image_size[1]} images, "
                        f"tile_size={self.tiling[0]}"
                    )
                self._tiled = make_tiled_scorer(
                    model,
                    self.scoring,
                    tile_size=self.tiling[0],
                    tile_overlap=self.tiling[1],
                    batch_size=tile_batch_size,
                    channels=self.channels,
                )
        else:
            self.image_size = _resolve_size(image_size, (None, None), self.source)
            self.channels = int(_channels)
            self._served = _served
            self._backend = _backend or SavedModelScorer(_served[1])
        if self.channels not in _COLOR_MODES:
            raise ValueError(
                f"Expected a model with 1 or 3 input channels. Received: {self.channels} "
                f"channels ({self.source or 'model'})"
            )
        if self.threshold is None:
            warnings.warn(
                f"{self._name()} has no threshold: `is_anomalous` will be None. "
                + (f"({self.threshold_note}) " if self.threshold_note else "")
                + "Pass threshold= (CLI: --threshold X) to decide.",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        path,
        threshold: float | None = None,
        *,
        scoring: ScoringConfig | dict | None = None,
        best: bool = False,
        image_size=None,
        jit_compile="auto",
        tile_size: int | None = None,
        tile_overlap: int | None = None,
    ) -> Detector:
        """Loads a run folder, an exported SavedModel folder, a ``.keras`` file or an edge
        export (``.tflite``, ``.onnx``, OpenVINO ``.xml``).

        * **Run folder** (``keras-skipae train``): ``model.keras`` (``best.keras`` with
          ``best=True``), the image size and colour mode of ``config.json``, and the
          threshold ``keras-skipae evaluate`` stored, if it was computed with the same
          scoring settings.
        * **SavedModel** (``keras-skipae export``, :func:`keras_skipae.export_saved_model`):
          its ``serving_default`` signature, scoring settings, input size and threshold,
          from ``assets/keras_skipae.json``.
        * **``.keras`` file**: the model only: default scoring (or ``scoring=``) and no
          threshold unless ``threshold=`` is given (a warning says so).
        * **Edge export** (:func:`keras_skipae.export.export_edge`): the file in its runtime
          (LiteRT, ONNX Runtime, OpenVINO; imported only then, a missing one names the extra
          to install), with the settings and threshold of ``<file>.json`` beside it.

        Args:
            path: the folder or file.
            threshold: a production threshold; overrides a stored one.
            scoring: the scoring settings for a run folder or ``.keras`` file (None: the
                defaults). A SavedModel's settings are fixed at export: a different
                ``scoring`` is refused.
            best: a run folder's ``best.keras`` instead of ``model.keras``.
            image_size: ``(height, width)`` or an int for a model that takes any size
                (built with ``input_shape=(None, None, C)``); otherwise the model's.
            jit_compile: for Keras models, :func:`~keras_skipae.scoring.make_scorer`'s.
            tile_size: score full-resolution images tile by tile with tiles of this size
                (the model's input size). None: the run's ``tile_size`` (``config.json``)
                or the SavedModel's (its ``"tiling"`` settings), else no tiling. A
                SavedModel's tiling is fixed at export.
            tile_overlap: the tiles' least overlap; None: the run's or the SavedModel's
                (0 without). A stored threshold applies only to the tiling it was
                measured with.

        Raises:
            FileNotFoundError: ``path`` does not exist, or is none of the three kinds.
            ValueError: a threshold that is not finite, a refused ``scoring``, a
                corrupted or tampered model file (the error names it).
        """
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"{str(p)!r} does not exist.")
        tiles = (tile_size, tile_overlap)
        if p.is_dir() and (p / "assets" / SETTINGS_FILE).is_file():
            return cls._load_saved_model(p, threshold, scoring, image_size, tiles)
        if p.is_dir() and RunFolder(p).config_path.is_file():
            return cls._load_run(p, threshold, scoring, best, image_size, jit_compile, tiles)
        if p.is_file() and edge_format(p) is not None:
            return cls._load_edge(p, threshold, scoring, image_size, tiles)
        if p.is_file() and p.suffix == ".keras":
            model = io_utils.load_keras_file(p, compile=False)
            return cls(
                model,
                scoring=scoring,
                threshold=threshold,
                image_size=image_size,
                source=p,
                kind="keras",
                threshold_source="explicit",
                threshold_note="a .keras file holds the model only",
                jit_compile=jit_compile,
                tile_size=tile_size,
                tile_overlap=tile_overlap or 0,
            )
        raise FileNotFoundError(
            f"{str(p)!r} is not a run folder (no config.json), a keras_skipae SavedModel "
            f"export (no assets/{SETTINGS_FILE}), a .keras file or an edge export (.tflite, "
            ".onnx, .xml)."
        )

    @classmethod
    def _load_run(cls, path, threshold, scoring, best, image_size, jit_compile, tiles=(None, None)):
        run = RunFolder(path)
        run.check_reconstruction("prediction")
        model = run.load(best=best, compile=False)
        run.color_mode(int(model.input_shape[-1]))  # refuses a damaged one, as evaluate does
        cfg = ScoringConfig.resolve(scoring, caller="Detector.load")
        data = run.config().get("data") or {}
        tiling = _merge_tiling(tiles, run.tiling())
        if image_size is None and data.get("image_size") and tiling is None:
            image_size = data["image_size"]
        source, note = "explicit", None
        if threshold is None:
            threshold, metrics_path, problem = run.threshold(cfg, tiling=tiling)
            source = str(metrics_path) if metrics_path else None
            note = problem or (
                f"the run has not been evaluated: run `keras-skipae evaluate {path}`"
                if threshold is None
                else None
            )
        return cls(
            model,
            scoring=cfg,
            threshold=threshold,
            image_size=image_size,
            source=path,
            kind="run",
            threshold_source=source,
            threshold_note=note,
            jit_compile=jit_compile,
            tile_size=tiling[0] if tiling else None,
            tile_overlap=tiling[1] if tiling else 0,
        )

    @classmethod
    def _load_saved_model(cls, path, threshold, scoring, image_size, tiles=(None, None)):
        settings = read_settings(path)
        stored = settings.get("tiling")
        stored = None if not stored else (int(stored["tile_size"]), int(stored["tile_overlap"]))
        tiling = _merge_tiling(tiles, stored)
        if tiling != stored:
            raise ValueError(
                f"The SavedModel {str(path)!r} tiles as it was exported "
                f"({_describe_tiling(stored)}); "
                f"export again to change it. Received: tile_size={tiles[0]!r}, "
                f"tile_overlap={tiles[1]!r}"
            )
        cfg = ScoringConfig.from_dict(settings.get("scoring") or {})
        if scoring is not None:
            asked = ScoringConfig.resolve(scoring, caller="Detector.load")
            differ = cfg.differences(asked)
            if differ:
                raise ValueError(
                    f"The SavedModel {str(path)!r} scores with the settings it was exported "
                    f"with; export again to change them. Received: scoring differing in "
                    f"{', '.join(differ)}"
                )
        inp = settings.get("input") or {}
        if image_size is None and inp.get("image_size"):
            image_size = tuple(inp["image_size"])
        source, note = "explicit", None
        if threshold is None:
            threshold = settings.get("threshold")
            source = f"{path}/assets/{SETTINGS_FILE}"
            note = "the SavedModel was exported without a threshold"
        loaded = load_saved_model(path)
        return cls(
            scoring=cfg,
            threshold=threshold,
            image_size=image_size,
            source=path,
            kind="saved_model",
            threshold_source=source,
            threshold_note=note,
            tile_size=tiling[0] if tiling else None,
            tile_overlap=tiling[1] if tiling else 0,
            _served=(loaded, served_scorer(loaded, tiling)),
            _channels=int(inp.get("channels") or settings["model"]["input_shape"][-1]),
        )

    @classmethod
    def _load_edge(cls, path, threshold, scoring, image_size, tiles):
        """A LiteRT, ONNX or OpenVINO export, scored in its runtime (:class:`EdgeScorer`)."""
        fmt = edge_format(path)
        settings = read_edge_settings(path)
        if tiles[0] is not None or tiles[1]:
            raise ValueError(
                f"The {fmt} export {str(path)!r} scores whole images at its fixed size; "
                f"tiling is for run folders and SavedModels. Received: tile_size={tiles[0]!r}"
            )
        cfg = ScoringConfig.from_dict(settings.get("scoring") or {})
        if scoring is not None:
            differ = cfg.differences(ScoringConfig.resolve(scoring, caller="Detector.load"))
            if differ:
                raise ValueError(
                    f"The {fmt} export {str(path)!r} scores with the settings it was exported "
                    f"with; export again to change them. Received: scoring differing in "
                    f"{', '.join(differ)}"
                )
        backend = EdgeScorer(fmt, path)
        h, w, channels = backend.input_shape
        if image_size is not None:
            _resolve_size(image_size, (h, w), path)  # refuses a size other than the file's
        source, note = "explicit", None
        if threshold is None:
            threshold = settings.get("threshold")
            source = f"{path}.json"
            note = f"the {fmt} file was exported without a threshold"
        return cls(
            scoring=cfg,
            threshold=threshold,
            image_size=(h, w),
            source=path,
            kind=fmt,
            threshold_source=source,
            threshold_note=note,
            _channels=int(channels),
            _backend=backend,
        )

    # ------------------------------------------------------------------ describing
    @property
    def color_mode(self) -> str:
        """``"grayscale"`` or ``"rgb"``: how files are read."""
        return _COLOR_MODES[self.channels]

    def _name(self) -> str:
        return f"Detector({self.kind} {self.source!r})" if self.source else f"Detector({self.kind})"

    def __repr__(self) -> str:
        if self.threshold is None:
            decision = "threshold=None (no decision: is_anomalous is None)"
        else:
            decision = f"threshold={self.threshold:.6g} ({self.threshold_source})"
        s = self.scoring
        size = f"{self.image_size[0]}x{self.image_size[1]}x{self.channels}"
        if self.tiling is not None:
            size = f"tiles {size}, overlap {self.tiling[1]}"
        return (
            f"<Detector {self.kind} {self.source or self.model.name!r}: {size}, "
            f"map={s.map}, smoothing={s.smoothing:g}, score={s.score}, {decision}>"
        )

    # ------------------------------------------------------------------ predicting
    def predict(
        self,
        x,
        *,
        batch_size: int = 16,
        on_error: str = "raise",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        workers: int | None = None,
    ) -> Predictions:
        """Scores images, one batch at a time.

        Args:
            x: an image file, a folder (read recursively: PNG, JPEG and BMP files,
                hidden files and folders skipped), a list of files and folders, a NumPy
                array ``[N, H, W, C]`` or ``[H, W, C]`` (float in [0, 1], or uint8), or
                a ``tf.data.Dataset`` of images (``[H, W, C]``, or batches ``[B, H, W,
                C]``) or of the datasets' dicts (``"image"``, optional ``"path"``).
            batch_size: images per model call (bounds memory).
            on_error: a bad file (not an image, unreadable, truncated; the datasets'
                checks, :func:`keras_skipae.data.image_info`): ``"raise"`` a
                :class:`~keras_skipae.data.DatasetError`, ``"skip"`` it with a warning,
                or ``"report"`` it as a :class:`Prediction` with ``error`` set.
            max_pixels: a file whose header declares more pixels (height x width) is
                a bad file, refused before it is decoded (default 64 Mi pixels,
                :data:`keras_skipae.data.DEFAULT_MAX_PIXELS`); None: any size. Arrays
                and datasets are already decoded and not checked.
            workers: threads that read (decode and resize) the next batch of files
                while the model scores the current one, in order
                (:func:`keras_skipae.data.reader.read_images`); None: the CPU cores, at
                most 4; 0: each file is read when it is reached.

        Returns:
            A :class:`Predictions` iterator (``total``: the number of images, when
            known). The input is checked now; images are read and scored as it is
            consumed.

        Raises:
            FileNotFoundError: a path that does not exist.
            ValueError: an array with non-finite values, values outside [0, 1], or a
                channel count the model does not take.
            TypeError: an input of another type.
        """
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool):
            raise ValueError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"Expected `batch_size` >= 1. Received: batch_size={batch_size!r}")
        if on_error not in ON_ERROR:
            raise ValueError(
                f"Expected `on_error` to be one of {ON_ERROR}. Received: on_error={on_error!r}"
            )
        items, total = self._items(
            x, check_max_pixels(max_pixels), check_workers(workers), int(batch_size)
        )
        return Predictions(self._stream(items, int(batch_size), on_error), total)

    def _items(
        self, x, max_pixels=DEFAULT_MAX_PIXELS, workers=0, prefetch=None
    ) -> tuple[Iterable[_Item], int | None]:
        """The input as lazily read items, and their number when known (checked now)."""
        if isinstance(x, (str, Path)):
            x = [x]
        if isinstance(x, (list, tuple)) and all(isinstance(v, (str, Path)) for v in x):
            files = list_image_files(x)
            return self._read_files(files, max_pixels, workers, prefetch), len(files)
        if isinstance(x, tf.data.Dataset):
            return self._dataset_items(x), None
        if isinstance(x, (np.ndarray, tf.Tensor)):
            array = self._check_array(np.asarray(x))
            return (_Item(i, None, image) for i, image in enumerate(array)), len(array)
        raise TypeError(
            "Expected `x` to be a path, a list of paths, a NumPy array or a tf.data.Dataset. "
            f"Received: x of type {type(x).__name__}"
        )

    def _read_files(self, files, max_pixels=DEFAULT_MAX_PIXELS, workers=0, prefetch=None):
        """Files read (checked, decoded and resized to the model's size) by ``workers``
        threads up to ``prefetch`` files (a batch) ahead of the model, in order
        (:func:`keras_skipae.data.reader.read_images`)."""
        size = None if self.tiling is not None else self.image_size
        for r in read_images(
            files,
            color_mode=self.color_mode,
            size=size,
            max_pixels=max_pixels,
            workers=workers,
            prefetch=prefetch,
        ):
            yield _Item(r.index, r.path, r.image, r.error, r.resized)

    def _dataset_items(self, dataset):
        index = 0
        for element in dataset:
            path = None
            if isinstance(element, dict):
                if "image" not in element:
                    raise ValueError(
                        "Expected dataset elements with an 'image' key. Received: keys "
                        f"{sorted(element)}"
                    )
                paths = element.get("path")
                element = element["image"]
                if paths is not None:
                    path = np.atleast_1d(paths.numpy())
            images = np.asarray(element)
            batched = images.ndim == 4
            images = self._check_array(images, name="dataset element")
            for j, image in enumerate(images):
                p = None if path is None else path[j if batched else 0]
                yield _Item(index, None if p is None else _text(p), image)
                index += 1

    def _check_array(self, array: np.ndarray, name: str = "x") -> np.ndarray:
        """``[N, H, W, C]`` float32 in [0, 1] from an array (``[H, W, C]`` is one image)."""
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(
                f"Expected images [N, H, W, C] or [H, W, C]. Received: {name} with shape "
                f"{array.shape}"
            )
        if array.shape[-1] != self.channels:
            raise ValueError(
                f"The model takes {self.channels} channel(s) ({self.color_mode}). Received: "
                f"{name} with shape {array.shape}"
            )
        if array.dtype == np.uint8 or array.dtype == np.uint16:
            return to_float_images(array).numpy()
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"Expected float images in [0, 1] or uint8. Received: {name} with "
                f"dtype={array.dtype}"
            )
        finite = np.isfinite(array)
        if not finite.all():
            bad = np.flatnonzero(~finite.reshape(len(array), -1).all(axis=1))
            raise ValueError(
                f"Expected finite pixel values. Received: {name} with NaN or infinite "
                f"values in image(s) {bad[:5].tolist()}"
            )
        low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"Expected float pixel values in [0, 1] (uint8 is divided by 255). Received: "
                f"{name} with values in [{low:g}, {high:g}]"
            )
        return array.astype(np.float32, copy=False)

    def _stream(self, items, batch_size, on_error) -> Iterator[Prediction]:
        pending, n_good = [], 0
        for item in items:
            if item.error is None and self.tiling is not None:
                height, width = item.image.shape[:2]
                if min(height, width) < self.tiling[0]:
                    where = repr(item.path) if item.path else f"image {item.index}"
                    item.error = (
                        f"{where} is {height}x{width} pixels, smaller than a "
                        f"{self.tiling[0]}x{self.tiling[0]} tile (resize it or score it "
                        "without tiling)."
                    )
            if item.error is not None:
                if on_error == "raise":
                    raise DatasetError(item.error)
                if on_error == "skip":
                    warnings.warn(item.error + " Skipped (on_error='skip').", stacklevel=2)
                    continue
            else:
                n_good += 1
            pending.append(item)
            if n_good == batch_size:
                yield from self._predict_items(pending)
                pending, n_good = [], 0
        if pending:
            yield from self._predict_items(pending)

    def _predict_items(self, items: list[_Item]) -> Iterator[Prediction]:
        good = [item for item in items if item.error is None]
        if good:
            if self.tiling is not None:
                out = self._score_tiled([item.image for item in good])
            else:
                batch = np.stack(
                    [
                        self._to_model_size(item.image) if item.resized is None else item.resized
                        for item in good
                    ]
                )
                out = self._score_batch(batch)
            if self.threshold is not None:
                decisions = is_anomalous(out["score"], self.threshold).numpy()
        k = 0
        for item in items:
            if item.error is not None:
                yield Prediction(item.index, item.path, None, None, None, None, None, item.error)
                continue
            height, width = item.image.shape[:2]
            yield Prediction(
                index=item.index,
                path=item.path,
                score=float(out["score"][k]),
                is_anomalous=None if self.threshold is None else bool(decisions[k]),
                anomaly_map=resize_map(out["anomaly_map"][k], (height, width)),
                reconstruction=out["reconstruction"][k],
                image=item.image,
            )
            k += 1

    def _to_model_size(self, image: np.ndarray) -> np.ndarray:
        if tuple(image.shape[:2]) == tuple(self.image_size):
            return image
        return resize_image(image, self.image_size).numpy()

    def _score_batch(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Scores a batch at the model's size: ``reconstruction``, ``anomaly_map``, ``score``.

        ``images``: float32 ``[B, h, w, C]`` in [0, 1], ``(h, w) == image_size``. The one
        place that calls the model; a tiled scorer replaces it for large frames.
        """
        return self._backend.score(images)

    def _score_tiled(self, images: list[np.ndarray]) -> dict[str, list]:
        """Scores full-resolution images tile by tile, one call per run of equal sizes.

        Returns per-image lists: ``reconstruction`` ``[H, W, C]``, ``anomaly_map``
        ``[H, W]`` and ``score``, in the order of ``images``.
        """
        fn = self._tiled if self.model is not None else self._served[1]
        out = {"reconstruction": [], "anomaly_map": [], "score": []}
        start = 0
        while start < len(images):
            end = start + 1
            while end < len(images) and images[end].shape == images[start].shape:
                end += 1
            frames = tf.constant(np.stack(images[start:end]))
            result = fn(frames) if self.model is not None else fn(images=frames)
            for key in out:
                out[key].extend(result[key].numpy())
            start = end
        out["score"] = np.asarray(out["score"], np.float32)
        return out


def served_scorer(loaded, tiling):
    """The SavedModel signature the Detector scores with: ``serving_tiled`` for a tiled
    export; else ``serving_default``, or, where the export also holds ``serving_xla``
    (``jit_compile="auto"`` on a CPU), a :class:`~keras_skipae.ops.device.MeasuredJit`
    that times the two per input shape on this machine and keeps the faster."""
    sigs = loaded.signatures
    if tiling:
        return sigs["serving_tiled"]
    if XLA_SIGNATURE[0] not in sigs:
        return sigs["serving_default"]
    plain, xla = sigs["serving_default"], sigs[XLA_SIGNATURE[0]]
    return MeasuredJit(lambda images: plain(images=images), lambda images: xla(images=images))


def _check_detector_tiling(tile_size, tile_overlap) -> tuple[int, int] | None:
    if tile_size is None:
        if tile_overlap:
            raise ValueError(
                f"`tile_overlap` needs a `tile_size`. Received: tile_overlap={tile_overlap!r}"
            )
        return None
    return check_tiling(tile_size, tile_overlap or 0)


def _describe_tiling(tiling) -> str:
    return "no tiling" if tiling is None else f"tile_size={tiling[0]}, tile_overlap={tiling[1]}"


def _merge_tiling(asked, stored) -> tuple[int, int] | None:
    """The tiling in use: the ``(tile_size, tile_overlap)`` asked for, else the stored one."""
    tile_size, tile_overlap = asked
    if tile_size is None:
        if stored is None:
            return _check_detector_tiling(None, tile_overlap)
        tile_size = stored[0]
        if tile_overlap is None:
            tile_overlap = stored[1]
    return _check_detector_tiling(tile_size, tile_overlap or 0)


def resize_map(anomaly_map, size) -> np.ndarray:
    """A ``[h, w]`` anomaly map resized to ``size`` (bilinear; antialiased when shrinking).

    The interpolation of :func:`keras_skipae.data.resize_image`, without clipping.
    """
    anomaly_map = np.asarray(anomaly_map, np.float32)
    if tuple(anomaly_map.shape) == tuple(size):
        return anomaly_map
    resized = tf.image.resize(anomaly_map[..., None], size, method="bilinear", antialias=True)
    return resized.numpy()[..., 0]


def list_image_files(paths) -> list[Path]:
    """Image files from files and folders (folders recursively, sorted; hidden skipped).

    A folder yields its files with an image extension (PNG, JPEG, BMP) and, as in the
    datasets, also every other non-hidden file, which is then reported as a bad file;
    a path given explicitly is kept whatever its extension (checked when read).

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    files = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"Input {str(p)!r} does not exist.")
        if p.is_dir():
            files.extend(
                f
                for f in sorted(p.rglob("*"))
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            files.append(p)
    return files


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _resolve_size(image_size, model_hw, source) -> tuple[int, int]:
    """The model's input size, or ``image_size`` where the model takes any size."""
    if image_size is not None:
        if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
            size = (int(image_size), int(image_size))
        else:
            try:
                size = tuple(int(v) for v in image_size)
            except (TypeError, ValueError):
                size = ()
            if len(size) != 2:
                raise ValueError(
                    "Expected `image_size` to be an int or a (height, width) pair. "
                    f"Received: image_size={image_size!r}"
                )
        if min(size) < 1 or any(m is not None and m != s for m, s in zip(model_hw, size)):
            raise ValueError(
                f"The model takes {model_hw[0]}x{model_hw[1]} images. Received: "
                f"image_size={image_size!r}"
            )
        return size
    if None in model_hw:
        raise ValueError(
            f"The model {source or ''} takes images of any size: pass image_size=(height, "
            "width), the size it was trained at."
        )
    return (int(model_hw[0]), int(model_hw[1]))
