"""What :func:`keras_skipae.evaluate` measured: :class:`EvaluationResult`."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from keras_skipae.io_utils import jsonable, write_text


@dataclasses.dataclass
class EvaluationResult:
    """Everything ``evaluate`` measured.

    Metrics that are undefined on the test set (e.g. AUROC with no good image,
    pixel metrics with no ground-truth mask) are ``nan``; ``to_dict`` turns
    them into ``None`` (JSON ``null``).

    Attributes:
        image_auroc: image-level ROC AUC.
        pixel_auroc: pixel-level ROC AUC (all test pixels pooled).
        aupro: area under the PRO curve up to FPR 0.3, normalised (MVTec AD).
        f1_max: best image-level F1 over thresholds (an oracle on the test set).
        f1_threshold: the threshold reaching ``f1_max``.
        threshold: the production threshold (``score >= threshold`` is
            defective): the explicit one, or a percentile of good validation
            scores; None if neither was given.
        threshold_source: ``"explicit"``, ``"val_data"`` or None.
        precision: image-level precision at ``threshold`` (None without one).
        recall: image-level recall at ``threshold`` (None without one).
        per_defect: ``{defect_type: {image_auroc, pixel_auroc, aupro, f1_max,
            f1_threshold, precision, recall, n_images, n_good, n_defective}}``,
            each defect type against the good test images.
        n_images, n_good, n_defective: test-set counts.
        settings: the scoring settings and evaluation options used.
        scores, labels, defect_types, paths: per test image, in input order.
        files: ``{role: path}`` of the files written (empty without ``out_dir``).
    """

    image_auroc: float
    pixel_auroc: float
    aupro: float
    f1_max: float
    f1_threshold: float
    threshold: float | None
    threshold_source: str | None
    precision: float | None
    recall: float | None
    per_defect: dict
    n_images: int
    n_good: int
    n_defective: int
    settings: dict
    scores: np.ndarray = dataclasses.field(repr=False, default_factory=lambda: np.zeros(0))
    labels: np.ndarray = dataclasses.field(repr=False, default_factory=lambda: np.zeros(0, int))
    defect_types: list = dataclasses.field(repr=False, default_factory=list)
    paths: list = dataclasses.field(repr=False, default_factory=list)
    files: dict = dataclasses.field(default_factory=dict)

    def to_dict(self, *, include_images: bool = True) -> dict:
        """A JSON-ready dict (nan -> None).

        Args:
            include_images: add ``images``: one ``{path, defect_type, label,
                score}`` per test image.
        """
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("scores", "labels", "defect_types", "paths"):
                continue
            out[f.name] = jsonable(getattr(self, f.name), allow_nan=False)
        if include_images:
            out["images"] = [
                {"path": p, "defect_type": d, "label": int(lab), "score": float(s)}
                for p, d, lab, s in zip(self.paths, self.defect_types, self.labels, self.scores)
            ]
        return out

    def summary(self) -> str:
        """A short plain-text table: overall metrics, then one row per defect type."""

        def f(value):
            return "  n/a" if value is None or value != value else f"{value:5.3f}"

        s = self.settings
        lines = [
            f"{self.n_images} test images ({self.n_good} good, {self.n_defective} defective); "
            f"map={s.get('map')}, smoothing={s.get('smoothing')}, score={s.get('score')}",
            f"{'':16s} {'image AUROC':>11s} {'pixel AUROC':>11s} {'AUPRO':>9s} {'F1-max':>9s}"
            f" {'recall':>9s}",
            f"{'all':16s} {f(self.image_auroc):>11s} {f(self.pixel_auroc):>11s}"
            f" {f(self.aupro):>9s} {f(self.f1_max):>9s} {f(self.recall):>9s}",
        ]
        for name, m in self.per_defect.items():
            lines.append(
                f"{name[:16]:16s} {f(m['image_auroc']):>11s} {f(m['pixel_auroc']):>11s}"
                f" {f(m['aupro']):>9s} {f(m['f1_max']):>9s} {f(m['recall']):>9s}"
            )
        if self.threshold is not None:
            lines.append(
                f"threshold {self.threshold:.5g} ({self.threshold_source}): precision "
                f"{f(self.precision).strip()}, recall {f(self.recall).strip()}"
            )
        else:
            lines.append("no production threshold (pass val_data or threshold)")
        return "\n".join(lines)

    def to_json(
        self,
        path: str | os.PathLike | None = None,
        *,
        overwrite: bool = False,
        include_images: bool = True,
    ) -> str:
        """The result as JSON text; also written (atomically) to ``path`` if given."""
        text = json.dumps(self.to_dict(include_images=include_images), indent=2) + "\n"
        if path is not None:
            write_text(path, text, overwrite=overwrite)
        return text
