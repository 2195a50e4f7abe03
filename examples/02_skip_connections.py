# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Skip connections: AE, AESc and U-Net, and why the skips help
#
# **Description:** compare an autoencoder without skips (AE), the AESc (additive
# skips, trained on stains) and a U-Net (concatenated skips, trained to copy its
# input); control the skips; see a U-Net reconstruct the defect it should flag;
# and reproduce the layer-discrepancy analysis of "Don't skip the skips".
#
# ## Introduction
#
# Skip connections give a decoder the encoder's high-resolution features, so the
# reconstruction is sharp. For anomaly detection that is a double-edged sword:
#
# * an **AE** (no skips) must squeeze the image through its bottleneck: it
#   reconstructs blurry images, so its residual is high everywhere, defects
#   included;
# * a **U-Net** trained to reconstruct its input learns to copy it through the
#   skips, *defects included*: the residual vanishes where it should be high;
# * the **AESc** (Collin & De Vleeschouwer, ICPR 2020) keeps the skips but trains
#   on stained inputs with clean targets, so it learns to *repair* what does not
#   fit, while staying sharp elsewhere.
#
# Collin, de Bodt, Mulders & De Vleeschouwer ("Don't skip the skips", ESANN)
# looked inside: in an AESc, the channel-mean activations of a clean image and of
# its stained version *differ*, more and more through the decoder, while in an AE
# they stay alike. The last section measures that with `keras_skipae.analysis`.
#
# **Small settings**: 64x64 grayscale synthetic images, 4-level models with 8 base
# filters, 48 training steps per model, so that the notebook runs in about a
# minute on a 2-core CPU. The trends are visible but noisy at this size; for the
# paper's settings use 256x256 images, `depth=6, filters=16` and 100+ epochs
# (`bench/bench_discrepancy.py` runs a larger version).

# %% [markdown]
# ## Setup

# %%
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import matplotlib.pyplot as plt
import numpy as np

import keras_skipae as ks
from keras_skipae import plotting

# keras_skipae.plotting selects the headless Agg backend when imported;
# switch back to inline figures for the notebook.
# %matplotlib inline

keras.utils.set_random_seed(0)
IMAGE_SIZE = 64  # realistic: 256
CATEGORY = "nut"
LABELS = {"ae": "AE", "aesc": "AESc", "unet": "U-Net"}
work_dir = Path(tempfile.mkdtemp(prefix="skipae_skips_"))

# %% [markdown]
# ## Data
#
# Synthetic data in the MVTec AD layout (see notebook 01). Eight good images are
# held out: they validate the training, and they are the probe images of the
# discrepancy analysis.

# %%
root = ks.data.synthetic.make_dataset(
    work_dir / "data",
    categories=[CATEGORY],
    image_size=IMAGE_SIZE,
    n_train=40,
    n_test_good=8,
    n_test_defect=3,
    seed=0,
)
good = ks.data.mvtec_dataset(root, CATEGORY, split="train", image_size=IMAGE_SIZE)
test = ks.data.mvtec_dataset(root, CATEGORY, split="test", image_size=IMAGE_SIZE)
val, train = good.take(8), good.skip(8)
test_batch = next(iter(test.batch(64).as_numpy_iterator()))
defect_types = np.array([d.decode() for d in test_batch["defect_type"]])
val_images = np.stack([e["image"].numpy() for e in val])

# %% [markdown]
# The probe pairs of the discrepancy analysis: each held-out good image, and the
# same image with a stain (`analysis.make_probe_pairs` draws them
# deterministically, without touching the global random state).

# %%
stains = ks.data.Stains()
clean_probe, stained_probe = ks.analysis.make_probe_pairs(val_images, stains, seed=0)
fig = plotting.plot_corruption_examples(
    clean_probe,
    stained_probe,
    (np.abs(clean_probe - stained_probe) > 0).astype("float32"),
    title="Probe pairs: clean / stained / changed pixels",
)
plt.show()

# %% [markdown]
# ## Build the model
#
# One core builder, three public builders. AE and AESc share every layer name
# (the AE just has no `dec{i}_skip` layers), so their taps line up layer by
# layer; the U-Net uses double 3x3 convolution blocks, max pooling and
# concatenated skips (here without dropout: a plain reconstruction U-Net).

# %%
shape = (IMAGE_SIZE, IMAGE_SIZE, 1)
builders = {
    "ae": lambda: ks.build_ae(input_shape=shape, depth=4, filters=8, bn_momentum=0.9),
    "aesc": lambda: ks.build_aesc(input_shape=shape, depth=4, filters=8, bn_momentum=0.9),
    "unet": lambda: ks.build_unet(
        input_shape=shape, depth=3, filters=8, dropout=0.0, bn_momentum=0.9
    ),
}
models = {name: build() for name, build in builders.items()}
for name, model in models.items():
    skips = [layer.name for layer in model.layers if layer.name.endswith("_skip")]
    print(f"{name:5s} {model.count_params():>9,} parameters  skips: {skips}")

# %% [markdown]
# **Skip control.** Every builder takes `skip_mode` (`"add"`, `"concat"` or
# `None`), `skips` (which levels, 0 = finest) and `skip_scale` (a fixed factor
# `0 < s <= 1` per skip). Fewer or weaker skips make the decoder lean less on
# them: the first thing to try when a model reconstructs defects too well.

# %%
weak = ks.get_model("aesc", input_shape=shape, depth=4, filters=8, skips=(0,), skip_scale=0.5)
print(
    "skip layers of get_model('aesc', skips=(0,), skip_scale=0.5):",
    [layer.name for layer in weak.layers if layer.name.endswith("_skip")],
)
print("its scale layer:", [layer.name for layer in weak.layers if "skip_scale" in layer.name])
try:
    ks.build_aesc(input_shape=shape, depth=4, skip_mode="multiply")
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# What the skips carry, before any training: the untrained AE outputs a flat
# blur, while the models with skips already pass the input's structure through.

# %%
sample = test_batch["image"][np.flatnonzero(defect_types != "good")[:3]]
untrained = {"AE": models["ae"], "AESc": models["aesc"], "AESc, skips=(0,), x0.5": weak}
untrained["U-Net"] = models["unet"]
fig, axes = plt.subplots(len(sample), 1 + len(untrained), figsize=(10, 2.1 * len(sample)))
outputs = {label: model.predict(sample, verbose=0) for label, model in untrained.items()}
for i, image in enumerate(sample):
    axes[i, 0].imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
    for j, (label, out) in enumerate(outputs.items(), start=1):
        axes[i, j].imshow(out[i, ..., 0], cmap="gray")  # auto contrast: untrained outputs are dim
        axes[0, j].set_title(label, fontsize=9)
axes[0, 0].set_title("input", fontsize=9)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Untrained reconstructions (auto contrast)")
plt.show()

# %% [markdown]
# ## Train
#
# * AE and AESc: stained inputs, clean targets (`corruption="auto"`, i.e.
#   `Stains()`), the paper's recipe;
# * U-Net: plain reconstruction, input = target (`corruption=None`), the usual
#   way to train a reconstruction model.
#
# The same data, seed, optimiser and number of steps for all three; the U-Net
# gets a higher learning rate (1e-2), without which it has not yet learned to
# copy its input after so few steps. PSNR/SSIM metrics are off (`metrics=()`):
# they only cost tracing time here.
#
# A `callbacks.DiscrepancyMonitor` on AE and AESc records the per-layer cosine
# similarity of the probe pairs after every epoch (in memory here; with
# `out_dir=...` it also writes CSV, JSON, figures and TensorBoard summaries). It
# runs the model in inference mode and does not change training.

# %%
monitors = {
    name: ks.training.callbacks.DiscrepancyMonitor(
        clean_probe, stained_probe, out_dir=None, tensorboard=False
    )
    for name in ("ae", "aesc")
}
runs = {}
for name, model in models.items():
    runs[name] = ks.train(
        model,
        train,
        val_data=val,
        corruption=None if name == "unet" else "auto",
        epochs=6,  # realistic: 100+
        steps_per_epoch=8,
        batch_size=8,  # realistic: 16
        learning_rate=1e-2 if name == "unet" else 3e-3,  # realistic: 1e-3
        metrics=(),
        callbacks=[monitors[name]] if name in monitors else [],
        seed=0,
        verbose=0,
    )
    print(
        f"{name:5s} {runs[name].seconds:5.1f} s  val_loss {runs[name].history['val_loss'][-1]:.4f}"
    )

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for name, run in runs.items():
    target = "input = target" if name == "unet" else "stained -> clean"
    ax.plot(run.history["val_loss"], marker="o", label=f"{LABELS[name]} ({target})")
ax.set(xlabel="epoch", ylabel="validation MSE", yscale="log", title="Validation loss")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Score anomalies
#
# **The U-Net reconstructs the defect.** Defective test images and each model's
# reconstruction and residual `|x - x_hat|` (one colour scale for all residuals).
# The U-Net copies the defects through its skips (the chip and the contamination
# reappear in its reconstruction), so its residual barely shows them. The AESc,
# trained to remove stains, repairs part of them and its residual marks them. The
# AE blurs everything, so its residual is high along every edge, defects
# included. (After so few steps the AESc still lets part of some defects
# through; longer training repairs more, and the U-Net copies even better.)

# %%
rows = np.flatnonzero(defect_types != "good")[::3][:4]
images = test_batch["image"][rows]
recon = {name: models[name].predict(images, verbose=0) for name in ("unet", "aesc", "ae")}
residual = {name: np.abs(images - r)[..., 0] for name, r in recon.items()}
vmax = max(float(r.max()) for r in residual.values())
columns = ["input", "ground truth"]
for name in recon:
    columns += [f"{LABELS[name]}\nreconstruction", f"{LABELS[name]}\nresidual"]
fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.6 * len(columns), 1.75 * len(rows)))
for i, k in enumerate(rows):
    panels = [(images[i, ..., 0], "gray", 1.0), (test_batch["mask"][k, ..., 0], "gray", 1.0)]
    for name in recon:
        panels += [(recon[name][i, ..., 0], "gray", 1.0), (residual[name][i], "inferno", vmax)]
    for j, (panel, cmap, top) in enumerate(panels):
        axes[i, j].imshow(panel, cmap=cmap, vmin=0, vmax=top)
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
    axes[i, 0].set_ylabel(defect_types[k], fontsize=8)
for j, title in enumerate(columns):
    axes[0, j].set_title(title, fontsize=8)
fig.suptitle(f"Residuals on defective images (residual colour scale 0 to {vmax:.2f})")
fig.tight_layout()
plt.show()

# %% [markdown]
# The same, in numbers: `evaluate` with its default recipe (smoothed residual,
# max score) for each model.

# %%
results = {name: ks.evaluate(model, test, progress=False) for name, model in models.items()}
for name, r in results.items():
    print(
        f"{name:5s} image AUROC {r.image_auroc:.3f}  pixel AUROC {r.pixel_auroc:.3f}  "
        f"AUPRO {r.aupro:.3f}"
    )

# %%
metrics_names = ["image_auroc", "pixel_auroc", "aupro"]
fig, ax = plt.subplots(figsize=(6.5, 3.4))
width = 0.25
for m, (name, r) in enumerate(results.items()):
    values = [getattr(r, key) for key in metrics_names]
    bars = ax.bar(np.arange(3) + (m - 1) * width, values, width, label=LABELS[name])
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
ax.set_xticks(np.arange(3), ["image AUROC", "pixel AUROC", "AUPRO@0.3"])
ax.set(ylim=(0, 1.1), title=f"Detection on synthetic '{CATEGORY}' ({IMAGE_SIZE} px, tiny runs)")
ax.axhline(0.5, color="0.5", lw=0.8, ls=":")
ax.legend(loc="lower right", fontsize=8)
plt.show()

# %% [markdown]
# ## Look inside: layer discrepancy ("Don't skip the skips")
#
# For every tap `i` (`enc{i}_out`, `bottleneck_out`, `dec{i}_out`),
# `analysis.layer_discrepancy` computes the channel mean `mu_i` of the
# activations, for the clean probe image and for its stained version, and the
# cosine similarity of the two maps. The paper's observation: for the AESc the
# similarity *falls through the decoder* and ends below the AE's; the AE's stays
# high. AE and AESc share their tap names, so the layers line up.

# %%
discrepancy = {
    name: ks.analysis.layer_discrepancy(models[name], clean_probe, stained_probe, return_means=True)
    for name in ("ae", "aesc")
}
layers = discrepancy["aesc"].layers
print("median cosine similarity, clean vs stained:")
print(" " * 16 + "".join(f"{name:>8s}" for name in discrepancy))
for layer in layers:
    print(
        f"  {layer:14s}"
        + "".join(f"{d.median('cosine')[layer]:8.3f}" for d in discrepancy.values())
    )
trend = ks.analysis.paper_trend(discrepancy["ae"], discrepancy["aesc"])
print("AESc falls through the decoder:", trend["aesc_falls"])
print("AESc ends below AE:            ", trend["aesc_ends_below_ae"])
print("paper's trend reproduced:      ", trend["reproduced"])

# %% [markdown]
# The paper's Fig. 2: the channel-mean maps of one probe pair, layer by layer
# (each clean map shares its colour scale with its stained twin).

# %%
pair = int(np.argmin(discrepancy["aesc"].cosine[layers[-1]]))  # the most visible stain
fig = plotting.plot_channel_means(
    {
        LABELS[name]: (
            [d.means_clean[k][pair] for k in layers],
            [d.means_corrupted[k][pair] for k in layers],
        )
        for name, d in discrepancy.items()
    },
    layers=layers,
    title="Channel-mean activations, clean vs stained",
)
plt.show()

# %% [markdown]
# The paper's Fig. 3: the distribution of the cosine similarity over the probe
# pairs, per layer, AE and AESc side by side.

# %%
fig = plotting.plot_similarity_distribution(
    {LABELS[name]: d.cosine for name, d in discrepancy.items()},
    layers=layers,
    title=f"Cosine similarity of channel means per layer ({len(clean_probe)} probe pairs)",
)
plt.show()

# %% [markdown]
# How the similarities evolved during training, from the `DiscrepancyMonitor`
# (median over the probe pairs; dashed: encoder, dotted: bottleneck, solid:
# decoder):

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
for ax, (name, monitor) in zip(axes, monitors.items()):
    medians = monitor.medians()
    epochs = medians.pop("epoch")
    for i, (layer, values) in enumerate(medians.items()):
        style = "--" if layer.startswith("enc") else ":" if layer.startswith("bottleneck") else "-"
        color = plt.get_cmap("viridis")(i / max(len(medians) - 1, 1))
        ax.plot(epochs, values, style, marker="o", markersize=3, color=color, label=layer)
    ax.set(xlabel="epoch", title=f"{LABELS[name]}: median cosine similarity per layer")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("median cosine similarity")
axes[1].legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# With 8 probe pairs and 48 training steps the medians are noisy; the printed
# `paper_trend` says whether this run reproduces the paper's trend. For a solid
# answer use more probes (16-64) and realistic training, and give the
# `DiscrepancyMonitor` an `out_dir` to keep its records and figures
# (`plotting.plot_similarity_over_epochs` draws one model's curves). The discrepancy also makes an
# anomaly map: `ks.evaluate(model, test, scoring=ks.ScoringConfig(map="discrepancy"))` (or
# `"combined"`, with the residual).
