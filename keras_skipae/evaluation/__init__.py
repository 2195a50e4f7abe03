"""Evaluation: :func:`evaluate` scores a test set with one scoring recipe and reports metrics.

* :mod:`~keras_skipae.evaluation.evaluate`: :func:`evaluate`, :class:`EvaluationResult`;
* :mod:`~keras_skipae.evaluation.metrics`: NumPy metrics (AUROC, AUPRO, F1-max, thresholds);
* :mod:`~keras_skipae.evaluation.report`: the files written to ``out_dir``.
"""

from keras_skipae.evaluation import metrics
from keras_skipae.evaluation.evaluate import EvaluationResult, evaluate
from keras_skipae.evaluation.report import OUTPUT_FILES

__all__ = ["EvaluationResult", "OUTPUT_FILES", "evaluate", "metrics"]
