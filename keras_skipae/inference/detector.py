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

The Detector is a thin facade: :mod:`keras_skipae.inference.loader` opens what was
written, :mod:`keras_skipae.inference.scorers` runs the model (one scorer per backend),
:mod:`keras_skipae.inference.inputs` reads, checks and batches the images.

Example:
    >>> import keras_skipae as ks
    >>> det = ks.Detector.load("runs/carpet")
    >>> for p in det.predict("incoming/"):
    ...     print(p.path, p.score, p.is_anomalous)
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator

import numpy as np

from keras_skipae import io_utils
from keras_skipae.data.datasets import DEFAULT_MAX_PIXELS, check_max_pixels
from keras_skipae.data.reader import check_workers
from keras_skipae.inference import inputs, loader
from keras_skipae.inference.inputs import ON_ERROR, list_image_files, resize_map
from keras_skipae.inference.scorers import KerasScorer, Scorer
from keras_skipae.ops.tiling import check_tiling
from keras_skipae.scoring import DEFAULT_TILE_BATCH, ScoringConfig, check_threshold, is_anomalous

__all__ = [
    "ON_ERROR",
    "Detector",
    "Prediction",
    "Predictions",
    "list_image_files",
    "resize_map",
]


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


class Detector:
    """A model with its scoring settings, input size and (optional) threshold.

    Build one with :meth:`load`, from a Keras model (``Detector(model, ...)``), or from
    a scorer (``Detector(scorer=...)``, :mod:`keras_skipae.inference.scorers`).
    ``predict`` returns a :class:`Predictions` iterator.

    Attributes:
        source: what was loaded (a path, or None).
        kind: ``"run"``, ``"saved_model"``, ``"keras"``, ``"model"``, or the edge
            formats ``"litert"``, ``"onnx"`` and ``"openvino"``.
        scoring: the :class:`~keras_skipae.scoring.ScoringConfig` in use.
        threshold: the production threshold (None: ``is_anomalous`` is None).
        threshold_source: where the threshold came from (a file, ``"explicit"``), or
            None; :attr:`threshold_note` says why there is none, when that is known.
        scorer: the :class:`~keras_skipae.inference.scorers.Scorer` that runs the model.
        image_size: the model's ``(height, width)``: every image is resized to it
            (with tiling: the tile's size; images are not resized).
        channels: 1 (grayscale) or 3 (RGB); files are read in that colour mode.
        model: the Keras model that scores (None for a SavedModel or an edge export): a
            model trained in mixed precision is replaced by its float32 twin
            (:func:`~keras_skipae.scoring.float32_model`), as in ``evaluate`` and the export.
        tiling: ``(tile_size, tile_overlap)`` when images are scored tile by tile at
            full resolution, else None.
    """

    def __init__(
        self,
        model=None,
        *,
        scorer: Scorer | None = None,
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
    ):
        if (model is None) == (scorer is None):
            got = "model=None" if model is None else "both a model and a scorer"
            raise ValueError(f"Expected a Keras `model` or a `scorer`. Received: {got}")
        tiling = check_tiling(tile_size, tile_overlap)
        self.scoring = ScoringConfig.resolve(scoring, caller="Detector")
        self.threshold = check_threshold(threshold)
        self.threshold_source = (
            (threshold_source or "explicit") if self.threshold is not None else None
        )
        self.threshold_note = threshold_note
        self.source = None if source is None else str(source)
        self.kind = kind
        if scorer is None:
            scorer = KerasScorer.build(
                model,
                self.scoring,
                image_size=image_size,
                jit_compile=jit_compile,
                tiling=tiling,
                tile_batch_size=tile_batch_size,
                source=self.source,
            )
        elif tiling is not None or image_size is not None:
            raise ValueError(
                "A scorer fixes its image size and tiling: build it with them. Received: "
                f"scorer with image_size={image_size!r}, tile_size={tile_size!r}"
            )
        self.scorer = scorer
        if io_utils.color_mode_for(self.channels) is None:
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
        found = loader.load(
            path,
            threshold,
            scoring=scoring,
            best=best,
            image_size=image_size,
            jit_compile=jit_compile,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
        )
        return cls(
            scorer=found.scorer,
            scoring=found.scoring,
            threshold=found.threshold,
            source=found.source,
            kind=found.kind,
            threshold_source=found.threshold_source,
            threshold_note=found.threshold_note,
        )

    # ------------------------------------------------------------------ describing
    # The scorer's: see the class's attributes.
    model = property(lambda self: self.scorer.model)
    image_size = property(lambda self: self.scorer.image_size)
    channels = property(lambda self: self.scorer.channels)
    tiling = property(lambda self: self.scorer.tiling)

    @property
    def color_mode(self) -> str:
        """``"grayscale"`` or ``"rgb"``: how files are read."""
        return io_utils.color_mode_for(self.channels)

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
        name = self.source or (self.model.name if self.model is not None else self.scorer.kind)
        return (
            f"<Detector {self.kind} {name!r}: {size}, "
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
        batch_size = inputs.check_predict_options(batch_size, on_error)
        items, total = inputs.read_items(
            x,
            channels=self.channels,
            color_mode=self.color_mode,
            max_pixels=check_max_pixels(max_pixels),
            size=None if self.tiling is not None else self.image_size,
            workers=check_workers(workers),
            prefetch=batch_size,
        )
        return Predictions(self._stream(items, batch_size, on_error), total)

    def _stream(self, items, batch_size, on_error) -> Iterator[Prediction]:
        for batch in inputs.batches(items, batch_size, on_error, (self.tiling or [None])[0]):
            yield from self._predict_items(batch)

    def _predict_items(self, items: list[inputs.Item]) -> Iterator[Prediction]:
        good = [item.image for item in items if item.error is None]
        if not good:
            out = None
        elif self.tiling is not None:
            out = self.scorer.score_frames(good)
        else:
            out = self.scorer.score(
                np.stack(
                    [
                        inputs.fit_to_size(item.image, self.image_size)
                        if item.resized is None
                        else item.resized
                        for item in items
                        if item.error is None
                    ]
                )
            )
        return _predictions(items, out, self.threshold)


def _predictions(items, out, threshold) -> Iterator[Prediction]:
    """The :class:`Prediction` of each item, from the scores ``out`` of its good ones."""
    if out is not None and threshold is not None:
        decisions = is_anomalous(out["score"], threshold).numpy()
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
            is_anomalous=None if threshold is None else bool(decisions[k]),
            anomaly_map=resize_map(out["anomaly_map"][k], (height, width)),
            reconstruction=out["reconstruction"][k],
            image=item.image,
        )
        k += 1
