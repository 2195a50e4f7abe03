"""Synthetic corruptions for corrupt-and-repair training, in pure TF ops.

Every corruption is a plain Python object with

* ``__call__(images, seed) -> (corrupted, target, mask)``: ``images`` a float32
  batch ``[B, H, W, C]`` in [0, 1], ``seed`` an int32/int64 tensor of shape ``[2]``
  (stateless RNG seed, as ``tf.random.stateless_*`` takes it). ``target`` is the
  image the model must reconstruct (the clean image, except for
  :class:`NoiseOnTop`, which changes the target too). ``mask`` is float32
  ``[B, H, W, 1]`` in {0, 1} and marks the pixels where ``corrupted`` differs
  from ``target`` because of the corruption (the pixels the model must repair).
* ``get_config()`` -> a plain dict of constructor arguments (JSON-serialisable),
  and ``from_config(config)``; :func:`serialize` / :func:`deserialize` handle
  nested corruptions, so a training config can be saved as JSON.

Everything is vectorised over the batch (no per-image Python loop, no
``tf.py_function``, no NumPy at call time), so the corruptions run inside
``Dataset.map``, inside a train step on a GPU, and under
``tf.function(jit_compile=True)``. Image height and width must be static.

The stain model is the one of Collin & De Vleeschouwer, ICPR 2020 (arXiv
2008.12977); :class:`NoiseOnTop` is the identity-anchoring regulariser of Bauer &
Müller (arXiv 2511.07233). :class:`Anomalies` mixes stains and scratches with
DRAEM-like regions (Zavrtanik et al., ICCV 2021) cut from Perlin noise and filled
with the batch's own texture, a procedural texture or a colour shift
(:mod:`~keras_skipae.data.corruptions.anomalies`, :mod:`~keras_skipae.data.corruptions.fills`,
:mod:`~keras_skipae.data.corruptions.perlin`):
the training anomalies of the learned head. One file per family; none imports
:mod:`keras_skipae.data.synthetic`, which makes the benchmark's test defects.
"""

from keras_skipae.data.corruptions.anomalies import Anomalies
from keras_skipae.data.corruptions.base import Corruption, deserialize, get, serialize
from keras_skipae.data.corruptions.combinators import Compose, OneOf
from keras_skipae.data.corruptions.fills import IntensityShift, SelfPaste, TextureBlend
from keras_skipae.data.corruptions.lines import Drops, Scratches
from keras_skipae.data.corruptions.noise import GaussianNoise, NoiseOnTop
from keras_skipae.data.corruptions.perlin import perlin_mask, perlin_noise
from keras_skipae.data.corruptions.stains import Stains

__all__ = [
    "Anomalies",
    "IntensityShift",
    "SelfPaste",
    "TextureBlend",
    "Compose",
    "Corruption",
    "Drops",
    "GaussianNoise",
    "NoiseOnTop",
    "OneOf",
    "Scratches",
    "Stains",
    "deserialize",
    "get",
    "perlin_mask",
    "perlin_noise",
    "serialize",
]
