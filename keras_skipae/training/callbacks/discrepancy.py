"""The layer-discrepancy monitor (Collin et al., "Don't skip the skips", ESANN)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_skipae import io_utils, plotting
from keras_skipae.analysis.discrepancy import LayerDiscrepancy, make_probe_pairs
from keras_skipae.data.corruptions import Stains
from keras_skipae.training.callbacks.preview import _summary_write


def _to_gray_u8(maps, lo, hi):
    scale = 255.0 / max(hi - lo, 1e-12)
    return np.clip((np.asarray(maps, "float64") - lo) * scale, 0, 255).astype("uint8")


def channel_means_grid(means_clean, means_corrupted, layers, *, cell: int = 64, pairs: int = 2):
    """A uint8 image of channel-mean maps (NumPy only, cheap enough for every epoch).

    Rows: clean / corrupted for each of the first ``pairs`` probe pairs; columns:
    the layers. Each map is resized (nearest) to ``cell x cell``; a clean map and
    its corrupted twin share one grey scale, so their difference is visible.

    Args:
        means_clean: ``{layer: [N, h, w]}``.
        means_corrupted: the same for the corrupted probes.
        layers: column order.
        cell: pixels per cell side.
        pairs: how many pairs (rows of two).

    Returns:
        ``[rows * (cell + 2), cols * (cell + 2)]`` uint8.
    """
    import cv2

    n = min(int(pairs), len(next(iter(means_clean.values()))))
    pad = 2
    grid = np.full((2 * n * (cell + pad), len(layers) * (cell + pad)), 255, np.uint8)
    for j, name in enumerate(layers):
        for i in range(n):
            a, b = means_clean[name][i], means_corrupted[name][i]
            lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
            for r, m in enumerate((a, b)):
                tile = cv2.resize(
                    _to_gray_u8(m, lo, hi), (cell, cell), interpolation=cv2.INTER_NEAREST
                )
                y = (2 * i + r) * (cell + pad)
                x = j * (cell + pad)
                grid[y : y + cell, x : x + cell] = tile
    return grid


class DiscrepancyMonitor(keras.callbacks.Callback):
    """Records per-layer clean/corrupted similarity of fixed probes during training.

    At the end of every ``every_n_epochs``-th epoch it runs
    :class:`keras_skipae.analysis.LayerDiscrepancy` (one inference-mode forward
    pass of the tap model on the ``2 N`` probe images, in a ``tf.function`` built
    once) and:

    * appends to ``out_dir/discrepancy.csv`` one row per layer (epoch, layer,
      shape, median / mean / quartiles of the cosine similarity, median L2
      distance) and rewrites ``out_dir/discrepancy.json`` (per-pair values of
      every recorded epoch), both atomically;
    * logs to TensorBoard (``log_dir``, default ``out_dir/tensorboard``) the
      scalars ``discrepancy/cosine/<layer>`` (median over the probes) and the
      image ``discrepancy/channel_means`` (:func:`channel_means_grid`);
    * saves the figures ``out_dir/figures/similarity_over_epochs.png`` (c),
      ``cosine_per_layer.png`` (b) and ``channel_means.png`` (a) every
      ``figures_every_n_epochs`` recorded epochs and at the end of training
      (matplotlib is the slow part, ~0.5 s a figure, so not every epoch by
      default).

    It does not change training: the model runs with ``training=False``
    (BatchNorm statistics untouched, Dropout off), the probes are corrupted once
    with a stateless seed, and no global random state is read; epoch ``logs``
    are not modified. With the same seed the weights after ``fit`` are identical
    with and without it (tested). On a resumed run, recorded epochs from the
    interrupted run are kept and later ones replaced.

    Args:
        probe_clean: ``[N, H, W, C]`` clean probe images in [0, 1] (16 is plenty).
        probe_corrupted: the same images corrupted, or None to draw them with
            ``corruption`` and ``seed``.
        corruption: a corruption object (e.g. :class:`keras_skipae.data.Stains`)
            or name, used when ``probe_corrupted`` is None (default: Stains).
        seed: the stateless seed of that corruption.
        every_n_epochs: record every n-th epoch (the last epoch is always recorded).
        out_dir: folder for CSV / JSON / figures, or None (keep in memory only:
            :attr:`history`).
        tensorboard: write TensorBoard summaries (needs ``out_dir`` or ``log_dir``).
        log_dir: TensorBoard folder (default ``out_dir/tensorboard``).
        layers: taps to monitor (default all; see
            :func:`keras_skipae.analysis.select_layers`).
        figures_every_n_epochs: save the figures every this many *recorded*
            epochs (None: only at the end of training; 1: every time).
        grid_pairs: probe pairs shown in the TensorBoard image.
        batch_size: pairs per forward pass.
        save_figures: save the matplotlib figures at all (False: CSV, JSON and
            TensorBoard only).

    Attributes:
        history: a list of ``{"epoch", "cosine": {layer: [N]}, "l2": {...}}``.
        layers, shapes: the monitored taps and their activation shapes.

    Example:
        >>> monitor = DiscrepancyMonitor(probes, corruption=ks.data.Stains(), seed=0,
        ...                              out_dir="runs/aesc/discrepancy")
        >>> model.fit(pairs, epochs=20, callbacks=[monitor])
    """

    CSV_NAME = "discrepancy.csv"
    JSON_NAME = "discrepancy.json"

    def __init__(
        self,
        probe_clean,
        probe_corrupted=None,
        *,
        corruption=None,
        seed: int = 0,
        every_n_epochs: int = 1,
        out_dir=None,
        tensorboard: bool = True,
        log_dir=None,
        layers="all",
        figures_every_n_epochs: int | None = None,
        grid_pairs: int = 2,
        batch_size: int = 64,
        save_figures: bool = True,
    ):
        super().__init__()
        clean = np.asarray(probe_clean)
        if clean.dtype == np.uint8:
            clean = clean.astype("float32") / 255.0
        clean = clean.astype("float32")
        if clean.ndim != 4 or not len(clean):
            raise ValueError(
                "`probe_clean` must be a non-empty batch [N, H, W, C]. "
                f"Received: probe_clean with shape {clean.shape}"
            )
        if probe_corrupted is None:
            if corruption is None:
                corruption = Stains()
            clean, corrupted = make_probe_pairs(clean, corruption, seed=int(seed))
        else:
            if corruption is not None:
                raise ValueError(
                    "Pass either `probe_corrupted` or `corruption`, not both. "
                    f"Received: corruption={corruption!r}"
                )
            corrupted = np.asarray(probe_corrupted, dtype="float32")
            if corrupted.shape != clean.shape:
                raise ValueError(
                    "`probe_corrupted` must have the shape of `probe_clean` "
                    f"{clean.shape}. Received: probe_corrupted with shape {corrupted.shape}"
                )
        if int(every_n_epochs) < 1:
            raise ValueError(
                f"`every_n_epochs` must be >= 1. Received: every_n_epochs={every_n_epochs!r}"
            )
        if figures_every_n_epochs is not None and int(figures_every_n_epochs) < 1:
            raise ValueError(
                "`figures_every_n_epochs` must be None or >= 1. "
                f"Received: figures_every_n_epochs={figures_every_n_epochs!r}"
            )
        self.probe_clean = clean
        self.probe_corrupted = corrupted
        self.every_n_epochs = int(every_n_epochs)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.log_dir = Path(log_dir) if log_dir is not None else None
        if self.log_dir is None and self.out_dir is not None and tensorboard:
            self.log_dir = self.out_dir / "tensorboard"
        self.tensorboard = bool(tensorboard) and self.log_dir is not None
        self.layer_selection = layers
        self.figures_every_n_epochs = figures_every_n_epochs
        self.grid_pairs = int(grid_pairs)
        self.batch_size = int(batch_size)
        self.save_figures = bool(save_figures)
        self.record_ = DiscrepancyRecord(n_pairs=len(clean))
        self._analyzer = None
        self._analyzed_model = None
        self._tensorboard = None
        self._recorded = 0

    # ------------------------------------------------------------------ state

    @property
    def history(self) -> list[dict]:
        return self.record_.history

    @property
    def layers(self) -> list[str]:
        return self.record_.layers

    @property
    def shapes(self) -> dict:
        return self.record_.shapes

    def medians(self) -> dict:
        """``{"epoch": [...], layer: [median cosine per recorded epoch]}``."""
        return self.record_.medians()

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs=None):
        if self._analyzer is None or self._analyzed_model is not self.model:
            self._analyzer = LayerDiscrepancy(self.model, self.layer_selection)
            self._analyzed_model = self.model
            self.record_.layers = list(self._analyzer.layers)
        if self.out_dir is not None and not self.record_.history:
            self.record_.load(self.out_dir / self.JSON_NAME)
        self._recorded = 0

    def on_epoch_end(self, epoch, logs=None):
        params = self.params or {}
        last = params.get("epochs") is not None and epoch + 1 >= int(params["epochs"])
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        self.record(epoch)

    def on_train_end(self, logs=None):
        if self.record_.history and self.out_dir is not None and self.save_figures:
            self._save_figures()
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    # ------------------------------------------------------------------ work

    def record(self, epoch: int):
        """Analyses the probes now and writes everything for ``epoch`` (0-based)."""
        result = self._analyzer(
            self.probe_clean,
            self.probe_corrupted,
            batch_size=self.batch_size,
            return_means=True,
        )
        self.record_.add(epoch, result)
        self._recorded += 1
        if self.out_dir is not None:
            self.record_.write(self.out_dir / self.CSV_NAME, self.out_dir / self.JSON_NAME)
            every = self.figures_every_n_epochs
            if self.save_figures and every is not None and self._recorded % int(every) == 0:
                self._save_figures()
        if self.tensorboard:
            if self._tensorboard is None:
                self._tensorboard = DiscrepancyTensorBoard(self.log_dir, pairs=self.grid_pairs)
            self._tensorboard.log(epoch, result, self.record_.layers)
        return result

    def _save_figures(self):
        save_discrepancy_figures(
            self.record_, self.out_dir / "figures", name=getattr(self.model, "name", "model")
        )


class DiscrepancyRecord:
    """What the monitor recorded: per-pair similarities of every recorded epoch.

    Attributes:
        layers: the monitored taps; shapes: their activation shapes.
        history: ``[{"epoch", "cosine": {layer: [N]}, "l2": {layer: [N]}}, ...]``.
        last_means: the channel means of the last recorded epoch (for its figure).
    """

    def __init__(self, n_pairs: int):
        self.n_pairs = int(n_pairs)
        self.layers: list[str] = []
        self.shapes: dict = {}
        self.history: list[dict] = []
        self.last_means = None
        self.last_epoch = None
        self._row_cache: dict = {}

    def add(self, epoch: int, result) -> None:
        """Records a :class:`~keras_skipae.analysis.DiscrepancyResult` for ``epoch``.

        Later epochs of an interrupted run are replaced.
        """
        self.shapes = result.shapes
        entry = {
            "epoch": int(epoch),
            "cosine": {k: result.cosine[k].tolist() for k in self.layers},
            "l2": {k: result.l2[k].tolist() for k in self.layers},
        }
        self.history = [h for h in self.history if h["epoch"] < epoch] + [entry]
        self.last_means = (result.means_clean, result.means_corrupted)
        self.last_epoch = int(epoch)

    def medians(self) -> dict:
        """``{"epoch": [...], layer: [median cosine per recorded epoch]}``."""
        out = {"epoch": [h["epoch"] for h in self.history]}
        for k in self.layers:
            out[k] = [float(np.median(h["cosine"][k])) for h in self.history]
        return out

    def _epoch_rows(self, h):
        """The CSV rows of one recorded epoch (cached: each epoch is summarised once)."""
        key = (h["epoch"], id(h))
        rows = self._row_cache.get(key)
        if rows is None:
            cos = np.asarray([h["cosine"][k] for k in self.layers], "float64")
            l2 = np.median(np.asarray([h["l2"][k] for k in self.layers], "float64"), axis=1)
            q25, q50, q75 = np.quantile(cos, [0.25, 0.5, 0.75], axis=1)
            mean = cos.mean(axis=1)
            rows = []
            for i, k in enumerate(self.layers):
                shape = tuple(self.shapes.get(k, (None, None, None)))
                rows.append(
                    {
                        "epoch": h["epoch"],
                        "layer": k,
                        "index": i,
                        "h": shape[0],
                        "w": shape[1],
                        "c": shape[2],
                        "cosine_median": float(q50[i]),
                        "cosine_mean": float(mean[i]),
                        "cosine_q25": float(q25[i]),
                        "cosine_q75": float(q75[i]),
                        "l2_median": float(l2[i]),
                    }
                )
            self._row_cache[key] = rows
        return rows

    def rows(self) -> list[dict]:
        """One CSV row per recorded epoch and layer."""
        return [row for h in self.history for row in self._epoch_rows(h)]

    def write(self, csv_path: Path, json_path: Path) -> None:
        """Writes the CSV summary and the per-pair JSON, each atomically."""
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        rows = self.rows()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        io_utils.write_text(csv_path, buf.getvalue())
        # Compact JSON: it is rewritten every recorded epoch and grows with them.
        saved = {
            "layers": self.layers,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "n_pairs": self.n_pairs,
            "epochs": self.history,
        }
        io_utils.write_text(json_path, json.dumps(saved) + "\n")

    def load(self, json_path: Path) -> None:
        """Takes the epochs of an earlier run of the same layers (a resumed run)."""
        if not json_path.exists():
            return
        try:
            saved = io_utils.read_json(json_path)
        except (OSError, ValueError):  # damaged: the monitor starts afresh
            return
        if saved.get("layers") != self.layers:
            return
        self.shapes = {k: tuple(v) for k, v in saved.get("shapes", {}).items()}
        self.history = list(saved.get("epochs", []))


def save_discrepancy_figures(record: DiscrepancyRecord, fig_dir: Path, *, name: str) -> None:
    """The monitor's three figures: similarity over epochs, per layer, channel means."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    med = record.medians()
    layers = record.layers
    plotting.plot_similarity_over_epochs(
        [e + 1 for e in med["epoch"]],
        {k: med[k] for k in layers},
        title=f"{name}: cosine similarity clean vs corrupted (median of {record.n_pairs} probes)",
        path=fig_dir / "similarity_over_epochs.png",
        close=True,
    )
    last = record.history[-1]
    plotting.plot_similarity_distribution(
        {name: last["cosine"]},
        layers=layers,
        title=f"epoch {last['epoch'] + 1}",
        path=fig_dir / "cosine_per_layer.png",
        close=True,
    )
    if record.last_means is not None:
        mc, mk = record.last_means
        plotting.plot_channel_means(
            {name: ([mc[k][0] for k in layers], [mk[k][0] for k in layers])},
            layers=layers,
            title=f"epoch {record.last_epoch + 1}",
            path=fig_dir / "channel_means.png",
            close=True,
        )


class DiscrepancyTensorBoard:
    """Writes the monitor's summaries with the public ``tf.summary`` API.

    Scalars ``discrepancy/cosine/<layer>`` (median over the probes) and the image
    ``discrepancy/channel_means`` (:func:`channel_means_grid`).
    """

    def __init__(self, log_dir, *, pairs: int = 2):
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.pairs = int(pairs)

    def log(self, epoch: int, result, layers) -> None:
        step = int(epoch)
        med = result.median("cosine")
        grid = channel_means_grid(
            result.means_clean, result.means_corrupted, layers, pairs=self.pairs
        )
        png = tf.image.encode_png(tf.constant(grid[..., None]))
        with self.writer.as_default():
            for k in layers:
                _summary_write(f"discrepancy/cosine/{k}", tf.constant(med[k]), step, "scalars")
            h, w = grid.shape
            _summary_write(
                "discrepancy/channel_means",
                tf.stack([tf.constant(str(w)), tf.constant(str(h)), png]),
                step,
                "images",
            )
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
