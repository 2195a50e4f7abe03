"""Procedural inspection data in the MVTec AD layout, for demos, tests and notebooks.

Nobody here can download MVTec AD, and many users are air-gapped, so this package
draws its own: textures and an object part, each with realistic defects (thin
scratches and cracks, holes, contamination with foreign material, subtle colour
changes, misplaced texture) and exact ground-truth masks.

Categories (:data:`CATEGORIES`):

* ``woven``: a woven carpet-like fabric (RGB), with per-thread colour and fibre noise;
* ``mesh``: a metal wire grid (grayscale), like MVTec's *grid*;
* ``wood``: wood grain (RGB): warped growth rings and fibres;
* ``gravel``: a stochastic natural texture (grayscale): pebbles on sand, where
  thin defects hide among similar structures;
* ``nut``: an object (grayscale): a centred hex nut with a small pose jitter.

:func:`make_dataset` writes them in the MVTec AD layout; :func:`labelled_arrays` and
:func:`labelled_dataset` give a seeded labelled split (defective images with their
masks, and good ones) in memory, for supervised examples.

Every sample draws new random phases, offsets, orientations and noise, so a model
must learn the texture, not memorise one image. Generation is deterministic for a
given seed and uses only NumPy and OpenCV (offline data generation).

Each defect's mask marks exactly the pixels that differ from the clean image it
was drawn on (:mod:`~keras_skipae.data.synthetic.defects`).

Modules: :mod:`~keras_skipae.data.synthetic.categories` (the categories, their channels
and defect types), :mod:`~keras_skipae.data.synthetic.textures` (the clean images),
:mod:`~keras_skipae.data.synthetic.defects` (the defects and :func:`generate_sample`),
:mod:`~keras_skipae.data.synthetic.writer` (:func:`make_dataset` and the labelled
splits). The preview figures of ``keras-skipae synth --preview`` are drawn by
:mod:`keras_skipae.apps.synth_preview`.
"""

from keras_skipae.data.synthetic.categories import (
    CATEGORIES,
    CHANNELS,
    DEFECTS,
    list_categories,
)
from keras_skipae.data.synthetic.defects import generate_sample
from keras_skipae.data.synthetic.writer import (
    DATASET_ENTRIES,
    DATASET_MARKER,
    LABELLED_SPLIT_ID,
    labelled_arrays,
    labelled_dataset,
    make_dataset,
)

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "DATASET_ENTRIES",
    "DATASET_MARKER",
    "DEFECTS",
    "LABELLED_SPLIT_ID",
    "generate_sample",
    "labelled_arrays",
    "labelled_dataset",
    "list_categories",
    "make_dataset",
]
