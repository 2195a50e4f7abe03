"""Reconstruction training: (corrupted input, clean target) pairs, :class:`ReconstructionTask`."""

from __future__ import annotations

from keras_skipae import losses as losses_lib
from keras_skipae.training.callbacks.preview import ReconstructionPreview
from keras_skipae.training.pairs import _check_stain_weight, _resolve_data
from keras_skipae.training.segmentation import check_output_matches_target
from keras_skipae.training.task import Task, learns_masks


class ReconstructionTask(Task):
    """``task="reconstruction"``: the model learns clean images from corrupted ones.

    Unbatched clean images are corrupted on the fly (stains by default; a model with
    an anomaly head also learns the corruption's masks), the corrupted pixels weighted
    ``stain_weight`` in the loss; batched ``(input, target)`` pairs are used as they are.
    Loss ``"mse"`` and metrics PSNR / SSIM by default; previews show reconstructions.
    """

    name = "reconstruction"
    loss = "mse"
    metrics = ("psnr", "ssim")
    preview = ReconstructionPreview

    def check_loss(self, loss_obj, loss) -> None:
        if isinstance(loss_obj, losses_lib.SegmentationLoss):
            raise ValueError(
                f"{loss_obj.kind!r} is a mask loss; task='reconstruction' compares images: "
                f"use one of {list(losses_lib.RECONSTRUCTION_LOSSES)}, or pass "
                f"task='segmentation'. Received: loss={loss!r}, task='reconstruction'"
            )

    def check_arguments(self, model, corruption, stain_weight, tile_size, loss_obj, loss):
        _check_stain_weight(stain_weight, loss_obj, loss)

    def data(self, train_data, val_data, *, model, tile_size, **options):
        return _resolve_data(
            train_data,
            val_data,
            corruption=options["corruption"],
            loss_obj=options["loss_obj"],
            stain_weight=options["stain_weight"],
            batch_size=options["batch_size"],
            validation_split=options["validation_split"],
            steps_per_epoch=options["steps_per_epoch"],
            seed=options["seed"],
            masks=learns_masks(model),
            tile_size=tile_size,
        )

    def check_output(self, net, pairs) -> None:
        check_output_matches_target(net, pairs, self.name)
