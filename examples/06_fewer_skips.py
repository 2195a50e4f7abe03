# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fewer skips: can I stop my U-Net from copying the defect?
#
# **Description:** a U-Net trained to reconstruct its input copies defects through
# its skips. Which skips to cut, what a fixed `skip_scale` does (and does not do),
# what `skip_dropout` does, and what each one buys, measured.
#
# ## Introduction
#
# "My U-Net reconstructs the scratch perfectly. Should I remove or weaken the
# skip connections?" Skip connections hand the decoder the encoder's
# high-resolution features. A model trained to reproduce its input then learns
# the cheapest solution: copy the input through the finest skip, defects
# included, so the residual `|x - x_hat|` is small exactly where it should be
# large.
#
# keras_skipae has three knobs on every builder:
#
# * `skips=`: which levels keep a skip (0 is the finest resolution);
# * `skip_scale=`: a fixed factor on each skip;
# * `skip_dropout=`: the probability that a sample's skip is dropped whole during
#   training (the identity at inference).
#
# The measure used throughout is the **repair ratio**
# (`ks.analysis.repair_ratio`): the mean residual inside the defect pixels over
# the mean residual of the pixels of good images. A model that copies the defect
# has a ratio near 1; one that repairs it, well above 1.
#
# **Small settings**: 64x64 grayscale images, 4-level models with 8 base filters
# and a few dozen training steps, so that this notebook runs in about a minute on
# a 2-core CPU. Its own numbers are noisy; the conclusions rest on the
# benchmark, `bench/bench_skips.py` (128x128, 600 steps per setting, mesh, woven
# and gravel), whose committed results this notebook reads at the end.

# %% [markdown]
# ## Setup

# %%
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import matplotlib.pyplot as plt
import numpy as np

import keras_skipae as ks

# keras_skipae.plotting selects the headless Agg backend when imported;
# switch back to inline figures for the notebook.
# %matplotlib inline

keras.utils.set_random_seed(0)
IMAGE_SIZE = 64  # realistic: 128-256
CATEGORY = "mesh"
DEPTH, FILTERS = 4, 8  # realistic: the builders' defaults (depth 6, 16 filters)
work_dir = Path(tempfile.mkdtemp(prefix="skipae_fewer_skips_"))


def find_bench_file(name):
    """A file of the repository's bench/results folder (the committed benchmark)."""
    here = Path.cwd()
    for base in (here, here.parent, Path(ks.__file__).resolve().parents[1]):
        path = base / "bench" / "results" / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"bench/results/{name} not found: run from the repository.")


def show_grid(rows, titles, row_labels, suptitle, cmaps=None, vmax=None):
    """One image per cell; ``rows`` is a list of lists of 2-D arrays."""
    fig, axes = plt.subplots(
        len(rows), len(titles), figsize=(1.55 * len(titles), 1.6 * len(rows)), squeeze=False
    )
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            cmap = (cmaps or {}).get(j, "gray")
            top = vmax if cmap == "inferno" else 1.0
            axes[i, j].imshow(panel, cmap=cmap, vmin=0, vmax=top)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(row_labels[i], fontsize=8)
    for j, title in enumerate(titles):
        axes[0, j].set_title(title, fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


# %% [markdown]
# ## Data
#
# Synthetic images in the MVTec AD layout (`ks.data.synthetic`): good training
# images and a test split with pixel masks of the defects.

# %%
root = ks.data.synthetic.make_dataset(
    work_dir / "data",
    categories=[CATEGORY],
    image_size=IMAGE_SIZE,
    n_train=32,  # realistic: 100+
    n_test_good=6,
    n_test_defect=2,
    seed=0,
)
good = ks.data.mvtec_dataset(root, CATEGORY, split="train", image_size=IMAGE_SIZE)
test = ks.data.mvtec_dataset(root, CATEGORY, split="test", image_size=IMAGE_SIZE)
val, train = good.take(6), good.skip(6)
test_batch = next(iter(test.batch(64).as_numpy_iterator()))
test_images, test_masks = test_batch["image"], test_batch["mask"]
labels = test_batch["label"]
defect_types = np.array([d.decode() for d in test_batch["defect_type"]])
shown = np.flatnonzero(labels != 0)[::2][:4]
fig = ks.plotting.plot_defect_examples(
    test_images[shown], test_masks[shown], labels[shown], title="Defective test images"
)
plt.show()

# %% [markdown]
# ## Build the model
#
# Three models of the same size: a U-Net trained **without** corruption (input =
# target, the usual reconstruction recipe, the copying baseline), the AESc
# trained on stains (its recipe), and the same AESc with `skip_dropout=0.5`.
# With `skip_dropout=p`, each skip gets a `SkipDropout` layer `dec{i}_skip_drop`;
# every other layer and every tap keeps its name, and `p=0` adds no layer at all.

# %%
shape = (IMAGE_SIZE, IMAGE_SIZE, 1)
common = {"input_shape": shape, "filters": FILTERS, "bn_momentum": 0.9}
models = {
    "unet_copy": ks.build_unet(depth=DEPTH - 1, dropout=0.0, **common),
    "aesc": ks.build_aesc(depth=DEPTH, **common),
    "aesc_sd0.5": ks.build_aesc(depth=DEPTH, skip_dropout=0.5, **common),
}
LABELS = {
    "unet_copy": "U-Net, no corruption",
    "aesc": "AESc",
    "aesc_sd0.5": "AESc, skip_dropout=0.5",
}
for name, model in models.items():
    merges = [layer.name for layer in model.layers if layer.name.endswith("_skip")]
    drops = [layer.name for layer in model.layers if layer.name.endswith("_skip_drop")]
    print(f"{name:11s} {model.count_params():>7,} parameters  skips {merges}  dropped {drops}")

# %% [markdown]
# In training mode, `skip_dropout` makes the output of one image change from
# sample to sample: here eight copies of one defective image go through the
# untrained model in one batch; each copy keeps or loses each skip at random.
# In inference mode all eight are identical.

# %%
copies = np.repeat(test_images[shown[:1]], 8, axis=0)
train_mode = np.asarray(models["aesc_sd0.5"](copies, training=True))
infer_mode = np.asarray(models["aesc_sd0.5"](copies, training=False))
print(
    "largest difference between copies: training mode "
    f"{np.abs(train_mode - train_mode[:1]).max():.3f}, inference mode "
    f"{np.abs(infer_mode - infer_mode[:1]).max():.3f}"
)
fig, axes = plt.subplots(1, 8, figsize=(12, 1.9))
for ax, out in zip(axes, train_mode):
    ax.imshow(out[..., 0], cmap="gray")  # auto contrast: the model is untrained
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("One image, eight samples of the skips (training mode, untrained model)")
plt.show()

# %% [markdown]
# ## Train
#
# The same data, seed, number of steps and optimiser for the three. The U-Net
# trains with `corruption=None`; the two AESc train on stained inputs with clean
# targets (`corruption="auto"`).

# %%
runs = {}
for name, model in models.items():
    runs[name] = ks.train(
        model,
        train,
        val_data=val,
        corruption=None if name == "unet_copy" else "auto",
        epochs=5,  # realistic: 600+ steps
        steps_per_epoch=8,
        batch_size=8,
        learning_rate=1e-2 if name == "unet_copy" else 3e-3,  # realistic: 1e-3
        metrics=(),
        seed=0,
        verbose=0,
    )
    print(
        f"{name:11s} {runs[name].seconds:5.1f} s  val_loss {runs[name].history['val_loss'][-1]:.4f}"
    )

fig, ax = plt.subplots(figsize=(6.5, 3.4))
for name, run in runs.items():
    ax.plot(run.history["val_loss"], marker="o", label=LABELS[name])
ax.set(xlabel="epoch", ylabel="validation MSE", yscale="log", title="Validation loss")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Score anomalies
#
# **Step 1: the U-Net copies the defect.** Each model's reconstruction and
# residual on defective test images (one colour scale for every residual). The
# U-Net trained without corruption passes the defect through: its residual
# barely marks it. The repair ratios of these small models follow; after 40
# steps the AESc is still blurry, so its good images have large residuals too
# and its small-mode ratio need not beat the U-Net's. The benchmark's 600-step
# models (last section) separate them.

# %%
recon = {name: model.predict(test_images, verbose=0) for name, model in models.items()}
residual = {name: np.abs(test_images - r).mean(axis=-1) for name, r in recon.items()}
vmax = max(float(residual[name][shown].max()) for name in models)
titles, cmaps, rows = ["input", "ground truth"], {}, []
for name in models:
    cmaps[len(titles) + 1] = "inferno"
    titles += [f"{LABELS[name]}\nreconstruction", "residual"]
for k in shown:
    row = [test_images[k, ..., 0], test_masks[k, ..., 0]]
    for name in models:
        row += [recon[name][k, ..., 0], residual[name][k]]
    rows.append(row)
fig = show_grid(rows, titles, defect_types[shown], "Small models on defective images", cmaps, vmax)
plt.show()
for name in models:
    ratio = ks.analysis.repair_ratio(test_images, recon[name], test_masks, labels)
    print(f"small-mode repair ratio {name}: {ratio:.2f}")

# %% [markdown]
# ## Which skips to cut
#
# A defect survives through a skip when the skip carries it at a resolution fine
# enough to draw it. The finest skip (level 0) carries the most detail, so it is
# the one to cut first: `skips=(1, 2, ...)` keeps the coarser ones.
# `ks.analysis.skip_contributions` measures, at every merge `dec{i}_skip` (found by
# layer name), the RMS of the skip over the RMS of the decoder branch it joins,
# on good images: how much each level leans on its skip.

# %%
good_test = test_images[labels == 0]
contrib = ks.analysis.skip_contributions(models["aesc"], good_test)
for merge, c in contrib.items():
    print(f"{merge}: skip RMS / decoder RMS = {c['ratio']:.2f}")
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(list(contrib), [c["ratio"] for c in contrib.values()], color="tab:blue")
ax.set(ylabel="skip RMS / decoder RMS", title="Trained small AESc: weight of each skip")
ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
plt.show()

# %% [markdown]
# ## What `skip_scale` does and does not do
#
# `skip_scale=s` multiplies a skip by a fixed `s`. But every encoder stage ends
# in BatchNorm (a learnable scale `gamma` and shift `beta`) followed by a
# positively homogeneous activation (LeakyReLU here: `act(2 z) = 2 act(z)`). So
# training can simply double the encoder's output and cancel `s = 0.5`: the
# same function, only the optimisation path differs.
#
# Here is that compensation done by hand on the trained AESc. Build the same
# architecture with `skip_scale=0.5`, copy the weights, then double `gamma` and
# `beta` of every `enc{i}_bn` and rescale the moving statistics of the next
# stage's BatchNorm (which sees a doubled input): the reconstructions of the
# `skip_scale=0.5` model are those of the `skip_scale=1` model again, up to
# BatchNorm's small `epsilon`.

# %%
base = models["aesc"]
half = ks.build_aesc(depth=DEPTH, skip_scale=0.5, **common)
half.set_weights(base.get_weights())  # Rescaling has no weights: same weights, other graph
before = half.predict(test_images, verbose=0)
stages = [f"enc{i}" for i in range(DEPTH - 1)] + ["bottleneck"]
for this, nxt in zip(stages[:-1], stages[1:]):
    gamma, beta, mean, var = half.get_layer(f"{this}_bn").get_weights()
    half.get_layer(f"{this}_bn").set_weights([2 * gamma, 2 * beta, mean, var])
    gamma, beta, mean, var = half.get_layer(f"{nxt}_bn").get_weights()
    half.get_layer(f"{nxt}_bn").set_weights([gamma, beta, 2 * mean, 4 * var])
after = half.predict(test_images, verbose=0)
print(f"max |scale 0.5 - scale 1|, same weights:        {np.abs(before - recon['aesc']).max():.4f}")
print(f"max |scale 0.5 - scale 1|, compensated weights: {np.abs(after - recon['aesc']).max():.1e}")
k = shown[0]
fig = show_grid(
    [[recon["aesc"][k, ..., 0], before[k, ..., 0], after[k, ..., 0]]],
    ["skip_scale=1", "skip_scale=0.5,\nsame weights", "skip_scale=0.5,\nBatchNorm x2"],
    [defect_types[k]],
    "A fixed skip scale can be undone by the encoder's BatchNorm",
)
plt.show()

# %% [markdown]
# Does training actually do it? The benchmark trained the AESc with
# `skip_scale=1` and with `skip_scale=0.5` for the same 600 steps and compared,
# at every Add, the RMS of the scaled skip over the RMS of the decoder branch
# (`ks.analysis.skip_contributions`, on good test images). Had training undone
# the factor, the two ratios would be equal; they are not: the `0.5` model's
# skips keep about half the weight at every level, and its encoder did not grow
# its outputs (the `source` RMS of `enc{i}_out` barely moved). So in this budget
# the factor stays. It also bought nothing: the repair ratios of the two models
# are printed below the figure.

# %%
bench = json.loads(find_bench_file("skips.json").read_text())
check = bench["skip_scale_check"]
fig, axes = plt.subplots(1, len(check), figsize=(4 * len(check), 3), squeeze=False)
for ax, (cat, levels) in zip(axes[0], check.items()):
    merges = list(levels["aesc"])
    x = np.arange(len(merges))
    full = [levels["aesc"][m]["ratio"] for m in merges]
    halved = [levels["aesc_scale0.5"][m]["ratio"] for m in merges]
    ax.bar(x - 0.2, full, 0.4, label="skip_scale=1")
    ax.bar(x + 0.2, halved, 0.4, label="skip_scale=0.5")
    ax.set_xticks(x, merges, fontsize=7, rotation=30)
    ax.set_title(cat, fontsize=9)
    for m, a, b in zip(merges, full, halved):
        print(f"bench {cat} {m}: skip/decoder RMS {a:.2f} (scale 1) vs {b:.2f} (scale 0.5)")
axes[0, 0].set_ylabel("skip RMS / decoder RMS")
axes[0, -1].legend(fontsize=7)
fig.suptitle("Benchmark, after training (128 px, 600 steps)")
fig.tight_layout()
plt.show()
for cat, per_setting in bench["results"].items():
    print(
        f"{cat}: repair ratio {per_setting['aesc']['repair_ratio']:.2f} with skip_scale=1, "
        f"{per_setting['aesc_scale0.5']['repair_ratio']:.2f} with skip_scale=0.5"
    )

# %% [markdown]
# ## What `skip_dropout` does
#
# `skip_dropout=p` is a constraint that training cannot undo: on a fraction `p`
# of the training samples a skip is simply absent, so the decoder must be able to
# reconstruct that level from the coarser path alone, and it cannot count on the
# skip to hand it the input, defects included. At inference the skip is always
# there. Kept skips are rescaled by `1 / (1 - p)` during training (inverted
# dropout): on the dev set that beat leaving them unscaled on every measure
# (`docs/decisions.md#skip-dropout`).
#
# The figure compares the small AESc with and without skip dropout on the same
# defective images.

# %%
titles = ["input", "ground truth", "AESc", "residual", "AESc, sd 0.5", "residual"]
rows = []
for k in shown:
    rows.append(
        [test_images[k, ..., 0], test_masks[k, ..., 0]]
        + [recon["aesc"][k, ..., 0], residual["aesc"][k]]
        + [recon["aesc_sd0.5"][k, ..., 0], residual["aesc_sd0.5"][k]]
    )
fig = show_grid(
    rows,
    titles,
    defect_types[shown],
    "Skip dropout (small models)",
    {3: "inferno", 5: "inferno"},
    vmax,
)
plt.show()

# %% [markdown]
# ## The benchmark: repair ratios
#
# `bench/bench_skips.py` trained every setting for the same 600 steps with the
# same seed at 128x128, on mesh, woven and gravel (all settings and the command in
# `bench/README.md`), and measured the repair ratio, PSNR and SSIM on good test
# images, and image and pixel AUROC with the default scoring. This notebook reads
# the committed table, `bench/results/skips.json`.

# %%
results, settings = bench["results"], list(bench["settings"])
columns = [("repair_ratio", "repair"), ("psnr", "PSNR"), ("ssim", "SSIM")]
columns += [("image_auroc", "img AUROC"), ("pixel_auroc", "pix AUROC")]
print(f"{'':22s}" + "".join(f"{title:>11s}" for _, title in columns))
for cat, per_setting in results.items():
    for s in settings:
        r = per_setting[s]
        print(f"{cat:7s} {s:14s}" + "".join(f"{r[key]:11.3f}" for key, _ in columns))
for cat, per_setting in results.items():
    for s in settings:
        print(f"bench repair ratio {cat} {s}: {per_setting[s]['repair_ratio']:.4f}")

# %%
fig, ax = plt.subplots(figsize=(8, 3.4))
width = 0.8 / len(results)
for c, (cat, per_setting) in enumerate(results.items()):
    values = [per_setting[s]["repair_ratio"] for s in settings]
    bars = ax.bar(np.arange(len(settings)) + (c - 1) * width, values, width, label=cat)
    ax.bar_label(bars, fmt="%.1f", fontsize=6)
ax.set_xticks(np.arange(len(settings)), settings, fontsize=8, rotation=20)
ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
ax.set(ylabel="repair ratio (higher: repaired)", title="Repair ratio per setting (benchmark)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The benchmark's reconstructions of two defective test images per category
# (saved by the bench script as 8-bit images, `bench/results/skips_examples.npz`):

# %%
examples = np.load(find_bench_file("skips_examples.npz"))
for cat in results:
    inputs = examples[f"{cat}/input"].astype("float32") / 255
    masks = examples[f"{cat}/mask"].astype("float32") / 255
    rows, row_labels = [], []
    for i in range(len(inputs)):
        row = [inputs[i].mean(axis=-1), masks[i, ..., 0]]
        row += [examples[f"{cat}/{s}"][i].mean(axis=-1) / 255 for s in settings]
        rows.append(row)
        row_labels.append(f"{cat} #{i}")
    fig = show_grid(
        rows, ["input", "mask", *settings], row_labels, f"Benchmark reconstructions: {cat}"
    )
    plt.show()

# %% [markdown]
# **Reading the table.** Compare each setting's repair ratio with the AESc's
# (the recipe) and with the copying U-Net's, and weigh it against the sharpness
# (PSNR, SSIM on good images) it costs; the AE is the no-skip extreme, and a
# blurry model scores a low ratio because its good images have large residuals
# too. In the recorded run (`bench/README.md#skip-benchmark`), the U-Net trained
# without corruption has the lowest mean ratio and the AESc one of the highest;
# cutting the finest skip, halving the skips or dropping them did not raise the
# AESc's ratio by more than run-to-run noise, and dropping skips cost
# sharpness. What stops the copying here is the training recipe (stained inputs,
# clean targets), not fewer or weaker skips. The means per setting:

# %%
for s in settings:
    mean = np.mean([per_setting[s]["repair_ratio"] for per_setting in results.values()])
    print(f"mean repair ratio {s:14s} {mean:.2f}")
