"""Data for corrupt-and-repair anomaly detection: corruptions, datasets, synthetic data.

* :mod:`keras_skipae.data.corruptions`: :class:`Stains` (the AESc stain model of
  Collin & De Vleeschouwer, ICPR 2020), :class:`GaussianNoise`,
  :class:`Scratches`, :class:`Drops`, :class:`NoiseOnTop`, the combinators
  :class:`Compose` / :class:`OneOf`; :func:`corrupt` (:mod:`keras_skipae.data.pipeline`)
  is the tf.data pipeline that turns images into batched ``(corrupted, target)`` pairs.
* :mod:`keras_skipae.data.datasets`: :func:`mvtec_dataset` (MVTec AD layout) and
  :func:`folder_dataset` (a folder of good images); the file checks they run first are
  in :mod:`~keras_skipae.data.image_files` (:func:`image_info`), the decoding in
  :mod:`~keras_skipae.data.images` (:func:`load_image`, :func:`resize_image`).
* :mod:`keras_skipae.data.synthetic`: procedural inspection data in the MVTec AD
  layout (:func:`make_dataset`), and a seeded labelled split in memory
  (:func:`labelled_dataset`).

This package never imports :mod:`keras_skipae.models`.

Example:
    >>> from keras_skipae import data
    >>> root = data.synthetic.make_dataset("data/synthetic", categories=["woven"])
    >>> train = data.mvtec_dataset(root, "woven", split="train", image_size=128)
    >>> pairs = data.corrupt(train, data.Stains(), seed=0, batch_size=16)
"""

from keras_skipae.data import corruptions, datasets, pipeline, synthetic
from keras_skipae.data.corruptions import (
    Anomalies,
    Compose,
    Corruption,
    Drops,
    GaussianNoise,
    NoiseOnTop,
    OneOf,
    Scratches,
    Stains,
    deserialize,
    get,
    serialize,
)
from keras_skipae.data.datasets import (
    DEFAULT_MAX_PIXELS,
    DatasetError,
    DatasetNotFoundError,
    folder_dataset,
    image_info,
    list_mvtec_categories,
    load_image,
    mvtec_dataset,
)
from keras_skipae.data.pipeline import check_tile_size, corrupt, random_crops
from keras_skipae.data.synthetic import (
    CATEGORIES,
    labelled_arrays,
    labelled_dataset,
    list_categories,
    make_dataset,
)

__all__ = [
    "Anomalies",
    "CATEGORIES",
    "Compose",
    "Corruption",
    "DEFAULT_MAX_PIXELS",
    "DatasetError",
    "DatasetNotFoundError",
    "Drops",
    "GaussianNoise",
    "NoiseOnTop",
    "OneOf",
    "Scratches",
    "Stains",
    "corrupt",
    "corruptions",
    "pipeline",
    "datasets",
    "deserialize",
    "folder_dataset",
    "get",
    "image_info",
    "labelled_arrays",
    "labelled_dataset",
    "list_categories",
    "list_mvtec_categories",
    "load_image",
    "make_dataset",
    "mvtec_dataset",
    "random_crops",
    "check_tile_size",
    "serialize",
    "synthetic",
]
