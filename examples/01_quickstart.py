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
# # Quickstart: anomaly detection with an AESc trained on stains
#
# **Description:** train an autoencoder with skip connections (AESc) on
# stain-corrupted images of defect-free parts, then find and localise defects from
# its reconstruction residual.
#
# ## Introduction
#
# Reconstruction-based anomaly detection trains a model on *good* images only. At
# test time, a defect is reconstructed badly, and the residual `|x - x_hat|` marks
# it. A plain autoencoder (AE) blurs everything; a U-Net copies its input, defects
# included, through its skip connections. The AESc of Collin & De Vleeschouwer
# (ICPR 2020, arXiv 2008.12977) keeps **additive skips** but trains on inputs
# corrupted with synthetic **stains**, with the clean image as the target: the
# model must learn to *repair* unexpected regions, not to copy them.
#
# This notebook goes through the whole recipe:
#
# 1. **Data**: a small synthetic data set in the MVTec AD layout, and stain corruption;
# 2. **Build the model**: `keras_skipae.build_aesc`;
# 3. **Train**: `keras_skipae.train` on (stained, clean) pairs;
# 4. **Score anomalies**: `keras_skipae.evaluate` (image AUROC, pixel AUROC, AUPRO),
#    anomaly maps and ROC curves.
#
# **Small settings.** Everything here is sized to run in about a minute on a
# 2-core CPU, most of it training: 64x64 grayscale images, 40 good images (32 for
# training, 8 held out), a 4-level AESc with 8 base filters, 15 short epochs
# (60 steps). Realistic settings are given in comments
# (`# realistic: ...`): 256x256 images (or 128x128), the full MVTec AD training set
# (a few hundred images per category), `depth=6, filters=16` and 100+ epochs.
# With the small settings, the numbers below are only a smoke test of the
# pipeline, not a benchmark.

# %% [markdown]
# ## Setup
#
# Nothing is downloaded: the data is drawn by `keras_skipae.data.synthetic`, and
# the models start from random weights.

# %%
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start

import keras
import matplotlib.pyplot as plt
import numpy as np

import keras_skipae as ks
from keras_skipae import plotting

# keras_skipae.plotting selects the headless Agg backend when imported;
# switch back to inline figures for the notebook.
# %matplotlib inline

keras.utils.set_random_seed(0)
IMAGE_SIZE = 64  # realistic: 256 (MVTec AD images are 700-1024 px, usually resized)
CATEGORY = "nut"  # a synthetic object category: a hex nut with small pose jitter
work_dir = Path(tempfile.mkdtemp(prefix="skipae_quickstart_"))
print("Working folder:", work_dir)
print("Keras", keras.__version__, "with backend", keras.backend.backend())

# %% [markdown]
# ## Data
#
# `keras_skipae.data.synthetic.make_dataset` writes procedurally drawn images in
# the MVTec AD folder layout (`<category>/train/good`, `<category>/test/<defect>`,
# `<category>/ground_truth/<defect>/*_mask.png`), with exact defect masks. Any real
# MVTec AD category folder works the same way from here on.

# %%
root = ks.data.synthetic.make_dataset(
    work_dir / "data",
    categories=[CATEGORY],
    image_size=IMAGE_SIZE,
    n_train=40,  # realistic: the full training set, 200-400 images
    n_test_good=10,
    n_test_defect=4,
    seed=0,
)
for folder in sorted((root / CATEGORY / "test").iterdir()):
    print(f"test/{folder.name:14s} {len(list(folder.glob('*.png')))} images")

# %% [markdown]
# `mvtec_dataset` reads one category as an **unbatched** `tf.data.Dataset` of
# dicts (`image`, `mask`, `label`, `defect_type`, `path`); images are float32 in
# [0, 1]. We hold out 8 good training images for validation: they give the
# validation loss and, later, the production threshold (set from good images
# only, never from the test set).

# %%
good = ks.data.mvtec_dataset(root, CATEGORY, split="train", image_size=IMAGE_SIZE)
test = ks.data.mvtec_dataset(root, CATEGORY, split="test", image_size=IMAGE_SIZE)
val = good.take(8)
train = good.skip(8)
print(train.element_spec["image"])

# %% [markdown]
# The test defects, with their ground-truth masks outlined in red:

# %%
examples = {}
for element in test:
    defect = element["defect_type"].numpy().decode()
    if defect != "good" and defect not in examples:
        examples[defect] = (element["image"].numpy(), element["mask"].numpy())
fig = plotting.plot_defect_examples(
    [image for image, _ in examples.values()],
    [mask for _, mask in examples.values()],
    list(examples),
    title=f"Synthetic '{CATEGORY}' test defects ({IMAGE_SIZE}x{IMAGE_SIZE}, mask outlined in red)",
    columns=len(examples),
)
plt.show()

# %% [markdown]
# **Stain corruption.** During training, every clean image gets a random stain
# (`keras_skipae.data.Stains`: an irregular closed spline filled with a random
# grey level, as in the paper) and the model learns to map the stained image back
# to the clean one. `corrupt()` builds the batched `(corrupted, target)` pipeline
# (pure TF, seeded); `with_mask=True` also returns where the stain is.

# %%
stains = ks.data.Stains()  # one stain per image, semi-axes 1-12 % of the side
preview_pairs = ks.data.corrupt(train, stains, seed=0, batch_size=6, with_mask=True)
corrupted, clean, stain_mask = next(iter(preview_pairs))
fig = plotting.plot_corruption_examples(
    clean.numpy(), corrupted.numpy(), stain_mask.numpy(), title="Stains: clean / corrupted / mask"
)
plt.show()

# %% [markdown]
# ## Build the model
#
# `build_aesc` builds the AESc: `depth` stages of Conv2D (5x5, stride 2) -
# BatchNorm - LeakyReLU, a mirrored decoder, and an **additive skip** from every
# encoder level to the decoder level of the same resolution. Each level ends in
# a named *tap* (`enc{i}_out`, `bottleneck_out`, `dec{i}_out`); `tap_model`
# exposes them, and the analyses of notebook 02 use them.
#
# `bn_momentum=0.9` lets the BatchNorm statistics keep up in a run of a few
# hundred steps (the default 0.99 suits long runs).

# %%
model = ks.build_aesc(
    input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1),
    depth=4,  # realistic: 6 (the paper's AESc at 256x256: a 4x4x512 latent)
    filters=8,  # realistic: 16
    bn_momentum=0.9,
)
print(f"{model.name}: {model.count_params():,} parameters")
taps = ks.tap_model(model)
activations = taps(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 1), "float32"))
for name, value in activations.items():
    print(f"  {name:15s} {tuple(value.shape[1:])}")
print("skip layers:", [layer.name for layer in model.layers if layer.name.endswith("_skip")])

# %% [markdown]
# The taps, level by level: spatial size and channels. The skips join each
# encoder level to the decoder level of the same size.

# %%
names = list(activations)
channels = [activations[n].shape[-1] for n in names]
fig, ax = plt.subplots(figsize=(8, 3))
bars = ax.bar(
    names,
    channels,
    color=[
        "tab:blue" if n.startswith("enc") else "tab:orange" if n.startswith("dec") else "tab:gray"
        for n in names
    ],
)
for bar, n in zip(bars, names):
    h, w = activations[n].shape[1:3]
    ax.annotate(
        f"{h}x{w}",
        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
        ha="center",
        va="bottom",
        fontsize=8,
    )
ax.set(
    ylabel="channels",
    title=f"AESc taps (input {IMAGE_SIZE}x{IMAGE_SIZE}x1): channels and spatial size",
)
ax.set_ylim(0, max(channels) * 1.2)
plt.xticks(rotation=30)
plt.show()

# %% [markdown]
# ## Train
#
# `keras_skipae.train` compiles the model with Adam at the requested learning rate
# and an MSE loss (PSNR and SSIM as metrics), corrupts the clean training images
# with stains on the fly (`corruption="auto"` means `Stains()`), reduces the
# learning rate on plateaus and reports the validation loss on stained validation
# images. With `run_dir=...` it also writes a resumable run folder (config,
# history, `.keras` model, TensorBoard logs); we skip that here.
#
# (The same thing by hand: `model.compile(optimizer="adam", loss="mse")` and
# `model.fit(ks.data.corrupt(train, ks.data.Stains(), seed=0), epochs=...)`.)

# %%
run = ks.train(
    model,
    train,
    val_data=val,
    epochs=15,  # realistic: 100-300
    batch_size=8,  # realistic: 16
    learning_rate=3e-3,  # realistic: 1e-3
    seed=0,
    verbose=0,
)
print(
    f"trained {len(run.history['loss'])} epochs in {run.seconds:.1f} s; "
    f"final val_loss {run.history['val_loss'][-1]:.4f}"
)

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(run.history["loss"], label="training loss (stained inputs)")
ax.plot(run.history["val_loss"], label="validation loss (stained inputs)")
ax.set(xlabel="epoch", ylabel="MSE to the clean image", yscale="log", title="AESc training")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# The trained AESc on stained validation images: it removes most of each stain
# (after only 60 training steps, not all of it) and keeps the part's edges.

# %%
corrupted, clean = next(iter(ks.data.corrupt(val, stains, seed=1, batch_size=6, shuffle=False)))
repaired = model.predict(corrupted, verbose=0)
fig, axes = plt.subplots(3, 6, figsize=(10, 5.4))
for j in range(6):
    for i, (img, label) in enumerate(
        ((corrupted, "stained input"), (repaired, "reconstruction"), (clean, "clean target"))
    ):
        axes[i, j].imshow(np.asarray(img[j])[..., 0], cmap="gray", vmin=0, vmax=1)
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
        if j == 0:
            axes[i, j].set_ylabel(label)
fig.suptitle("AESc repairs stains (validation images)")
plt.show()

# %% [markdown]
# ## Score anomalies
#
# `keras_skipae.evaluate` reconstructs every test image and scores it with one
# fixed, documented recipe (`keras_skipae.scoring`): the residual map
# `|x - x_hat|`, Gaussian smoothing (sigma 4 px) and the maximum of the map as the
# image score. Nothing is tuned on the test set; the production threshold is the
# 99th percentile of the scores of good validation images.
#
# * **image AUROC**: does the image score separate good from defective images?
# * **pixel AUROC**: does the map separate defect pixels from the rest?
# * **AUPRO** (up to a false-positive rate of 0.3, as in MVTec AD): the per-region
#   overlap, which weighs small defects as much as large ones.

# %%
result = ks.evaluate(model, test, val_data=val, progress=False)
print(f"image AUROC {result.image_auroc:.3f}")
print(f"pixel AUROC {result.pixel_auroc:.3f}")
print(f"AUPRO@0.3   {result.aupro:.3f}")
print(
    f"threshold   {result.threshold:.4f} (from {result.settings['n_val_good']} good validation images)"
)
print(f"precision {result.precision:.2f}, recall {result.recall:.2f} at that threshold")
for defect, m in result.per_defect.items():
    print(f"  {defect:14s} image AUROC {m['image_auroc']:.3f}  pixel AUROC {m['pixel_auroc']:.3f}")

# %% [markdown]
# Anomaly maps of a few test images: input, reconstruction, smoothed residual,
# ground truth, and the map over the input with the ground truth outlined.
# `keras_skipae.scoring.compute` is the same function `evaluate` uses.

# %%
batch = list(test.batch(64).as_numpy_iterator())[0]
order = np.argsort(-result.scores)  # evaluate keeps the input order
picks = [i for i in order if batch["label"][i] == 1][:3] + [
    i for i in order if batch["label"][i] == 0
][:1]
images = batch["image"][picks]
scored = ks.scoring.compute(model, images)
fig = plotting.plot_anomaly_cases(
    images,
    scored["reconstruction"].numpy(),
    scored["anomaly_map"].numpy(),
    batch["mask"][picks],
    titles=[f"{batch['defect_type'][i].decode()}\nscore {result.scores[i]:.3f}" for i in picks],
)
plt.show()

# %% [markdown]
# ROC curves (image level, and pixel level with all test pixels pooled), and the
# score histogram with the production threshold:

# %%
fpr, tpr = ks.evaluation.metrics.roc_curve(result.labels, result.scores)
maps = ks.scoring.compute(model, batch["image"])["anomaly_map"].numpy()
pixel_fpr, pixel_tpr = ks.evaluation.metrics.pixel_roc_curve(batch["mask"][..., 0], maps)
fig = plotting.plot_roc_curves(
    {
        "image": (fpr, tpr, result.image_auroc),
        "pixel": (pixel_fpr, pixel_tpr, result.pixel_auroc),
    },
    title=f"AESc on synthetic '{CATEGORY}' ({IMAGE_SIZE} px, 15 epochs)",
)
plt.show()
fig = plotting.plot_score_histogram(
    result.scores,
    result.labels,
    threshold=result.threshold,
    threshold_label="threshold (good validation images)",
    title="Image scores: max of the smoothed residual",
)
plt.show()

# %% [markdown]
# ## Next steps
#
# * Real data: `ks.data.mvtec_dataset("/data/mvtec", "carpet", split="train",
#   image_size=256)`; a plain folder of good images: `ks.data.folder_dataset`.
# * Write the figures and `metrics.json` to disk:
#   `ks.evaluate(model, test, val_data=val, out_dir="runs/x/eval")`.
# * Notebook 02 compares AE, AESc and U-Net and looks inside them; notebook 03
#   exports the model as a SavedModel with a scoring signature.
# * From the shell: `keras-skipae demo`, `keras-skipae train ...`.
