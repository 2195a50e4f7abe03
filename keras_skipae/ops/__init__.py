"""Primitives shared by the rest of the package (TF ops only).

The modules are imported by their full names: :mod:`~keras_skipae.ops.image` (the one
Gaussian, the separable blur, the SSIM moments), :mod:`~keras_skipae.ops.stats` (channel
means, cosine similarity), :mod:`~keras_skipae.ops.tiling` (the tile grid, blending,
``check_tiling``) and :mod:`~keras_skipae.ops.device` (the per-path XLA choice).
"""

__all__: list[str] = []
