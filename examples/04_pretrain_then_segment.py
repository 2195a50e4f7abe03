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
# # Pretrain a U-Net on unlabelled images, then segment with few labels
#
# **Description:** pretrain a U-Net as a plain autoencoder and as a denoiser on
# unlabelled images, show which one copies its input and which one repairs it,
# then replace the head and fine-tune it for defect segmentation on a few labelled
# masks, compared with the same U-Net trained from scratch.
#
# ## Introduction
#
# "I pretrained my U-Net as an autoencoder on unlabelled images. Did it learn
# anything, or did it just pass the image through its skips? Does it help my
# segmentation?"
#
# A U-Net trained to reproduce its input can do so through its finest skip:
# the cheapest solution is to copy the image, defects included, which needs no
# understanding of the texture. Pretraining on a degraded input with the clean
# image as target (a denoiser) rules that out: the model must repair, so it must
# learn what the texture looks like. keras_skipae's corruptions (stains by
# default) are exactly that.
#
# The steps:
#
# 1. pretrain the same U-Net twice on unlabelled good images: as a plain
#    autoencoder (`corruption=None`, input = target) and as a denoiser on stains
#    (`corruption="auto"`); the encoder is trained, not frozen;
# 2. show with a number which one copies: the repair ratio
#    (`ks.analysis.repair_ratio`, the residual inside the defects over the residual
#    of good images; about 1 means the defects are copied) and the PSNR of the
#    output against the input on defective images;
# 3. replace the head (`ks.models.replace_head`) and fine-tune for segmentation
#    (`ks.train(..., task="segmentation", loss="bce+dice")`) on N labelled masks;
# 4. compare with the same U-Net from a random initialisation: loss curves, IoU and
#    Dice per N on held-out test images.
#
# **Small settings**: 64x64 grayscale images, a 3-level U-Net with 8 base
# filters, a few dozen steps per training, N in (8, 32), one seed, so that this
# notebook runs in about a minute on a 2-core CPU. Its numbers are noisy; the
# study is `bench/bench_transfer.py` (N = 8, 32, 128, two seeds, longer
# trainings), whose committed table this notebook reads at the end.

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
import tensorflow as tf

import keras_skipae as ks

# keras_skipae.plotting selects the headless Agg backend when imported;
# switch back to inline figures for the notebook.
# %matplotlib inline

keras.utils.set_random_seed(0)
IMAGE_SIZE = 64  # realistic: 128-256
CATEGORY = "gravel"  # a grayscale synthetic texture (the benchmark's category)
DEPTH, FILTERS = 3, 8  # realistic: the builders' defaults (depth 4, 16 filters)
BATCH = 8
N_LABELS = (8, 32)  # the benchmark adds 128
work_dir = Path(tempfile.mkdtemp(prefix="skipae_pretrain_segment_"))


def find_bench_file(name):
    """A file of the repository's bench/results folder (the committed benchmark)."""
    here = Path.cwd()
    for base in (here, here.parent, Path(ks.__file__).resolve().parents[1]):
        path = base / "bench" / "results" / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"bench/results/{name} not found: run from the repository.")


def overlap_scores(masks, probabilities, threshold=0.5):
    """IoU and Dice of the thresholded predictions, pooled over all test pixels."""
    t = np.asarray(masks) > 0.5
    p = np.asarray(probabilities) >= threshold
    tp, fp, fn = np.sum(t & p), np.sum(~t & p), np.sum(t & ~p)
    return tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


def psnr(a, b):
    """Mean PSNR (peak 1) over a batch of images."""
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def build():
    # bn_momentum 0.9: BatchNorm's moving statistics (used at inference) keep up with
    # short trainings; the default 0.99 lags behind over a few hundred steps.
    return ks.build_unet(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), filters=FILTERS, depth=DEPTH, bn_momentum=0.9
    )


# %% [markdown]
# ## Data
#
# Three disjoint seeded sets of synthetic images
# (`ks.data.synthetic.labelled_arrays`, whose seeds never repeat an image of
# `make_dataset`, the detection benchmark's data):
#
# * **unlabelled**: good images only, for pretraining;
# * **labelled**: images with their exact defect masks (75 % defective, 25 % good
#   with empty masks); the first N of them are the N labels;
# * **test**: held out, labelled the same way, for every measurement below.

# %%
unlabelled = ks.data.synthetic.labelled_arrays(
    CATEGORY, 48, image_size=IMAGE_SIZE, seed=20, defect_fraction=0.0
)["image"]
labelled = ks.data.synthetic.labelled_arrays(
    CATEGORY, max(N_LABELS), image_size=IMAGE_SIZE, seed=11
)
test = ks.data.synthetic.labelled_arrays(CATEGORY, 32, image_size=IMAGE_SIZE, seed=2)
defective = test["label"] != 0
print(
    f"unlabelled {unlabelled.shape}, labelled {labelled['image'].shape}, "
    f"test {test['image'].shape} ({defective.sum()} defective)"
)
shown = np.flatnonzero(defective)[:4]
fig = ks.plotting.plot_defect_examples(
    test["image"][shown], test["mask"][shown], test["label"][shown], title="Defective test images"
)
plt.show()

# %% [markdown]
# ## Build the model
#
# One U-Net, built once; the plain autoencoder and the denoiser start from the
# same initial weights, so the only difference between them is the recipe.

# %%
keras.utils.set_random_seed(0)
initial_weights = build().get_weights()
pretrained = {}
for name in ("plain", "denoiser"):
    pretrained[name] = build()
    pretrained[name].set_weights(initial_weights)
unet = pretrained["plain"]
print(f"{unet.name}: {unet.count_params():,} parameters, output {unet.output.shape}")
levels = [f"enc{i}_out" for i in range(DEPTH)] + ["bottleneck_out"]
fig, ax = plt.subplots(figsize=(5, 2.6))
ax.bar(levels, [unet.get_layer(n).output.shape[-1] for n in levels], color="tab:blue")
ax.set(ylabel="channels", title="U-Net encoder: channels per level (skips at enc*)")
plt.show()

# %% [markdown]
# ## Pretrain
#
# The same unlabelled images, steps, seed and learning rate for both. The plain
# autoencoder sees the image as input and target; the denoiser sees a stained
# image and must return the clean one (`corruption="auto"`, stains, with the stained
# pixels weighted up in the loss).

# %%
runs = {}
for name, corruption in (("plain", None), ("denoiser", "auto")):
    runs[name] = ks.train(
        pretrained[name],
        tf.data.Dataset.from_tensor_slices(unlabelled),
        corruption=corruption,
        epochs=4,  # realistic: 1,000+ steps
        steps_per_epoch=8,
        batch_size=BATCH,
        learning_rate=3e-3,
        validation_split=0.0,
        schedule=None,
        metrics=(),
        tensorboard=False,
        seed=0,
        verbose=0,
    )
    print(
        f"pretrained {name:8s} {runs[name].seconds:5.1f} s  loss {runs[name].history['loss'][-1]:.4f}"
    )
fig, ax = plt.subplots(figsize=(6, 3.2))
for name, run in runs.items():
    ax.plot(run.history["loss"], marker="o", label=name)
ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="Pretraining")
ax.legend()
plt.show()

# %% [markdown]
# ## Copy or repair
#
# Both models on the defective test images. A model that copies returns its
# input, defect included: a small residual inside the defect (repair ratio near
# 1) and a high PSNR of the output against the input. A model that repairs
# returns the texture without the defect: a larger residual there.

# %%
recon = {name: m.predict(test["image"], verbose=0) for name, m in pretrained.items()}
residual = {name: np.abs(test["image"] - r)[..., 0] for name, r in recon.items()}
measures = {}
for name in pretrained:
    ratio = ks.analysis.repair_ratio(test["image"], recon[name], test["mask"], test["label"])
    close = psnr(recon[name][defective], test["image"][defective])
    measures[name] = (ratio, close)
    print(
        f"small-mode {name} repair ratio {ratio:.3f}, "
        f"PSNR(output, input) on defective images {close:.2f} dB"
    )
vmax = max(float(residual[name][shown].max()) for name in pretrained)
titles = ["input", "mask", "plain output", "residual", "denoiser output", "residual"]
fig, axes = plt.subplots(len(shown), 6, figsize=(9, 1.6 * len(shown)), squeeze=False)
for row, k in enumerate(shown):
    panels = [test["image"][k, ..., 0], test["mask"][k, ..., 0]]
    panels += [recon["plain"][k, ..., 0], residual["plain"][k]]
    panels += [recon["denoiser"][k, ..., 0], residual["denoiser"][k]]
    for col, panel in enumerate(panels):
        is_residual = col in (3, 5)
        axes[row, col].imshow(
            panel,
            cmap="inferno" if is_residual else "gray",
            vmin=0,
            vmax=vmax if is_residual else 1,
        )
        axes[row, col].set_xticks([])
        axes[row, col].set_yticks([])
for col, title in enumerate(titles):
    axes[0, col].set_title(title, fontsize=8)
fig.suptitle("Plain autoencoder vs denoiser on defective images (one residual scale)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Freeze an encoder loaded from a local file
#
# Pretrained weights usually come from a file. Nothing here is downloaded: the
# denoiser's weights are saved to a local file, loaded into a freshly built
# U-Net, and its encoder frozen with `ks.models.set_trainable(model,
# encoder=False)` (the layers `enc{i}_*` and `bottleneck*`; re-compile after
# changing it, `ks.train` compiles). The fine-tuning below trains every layer;
# freezing the encoder is the option when the labels are very few.
#
# With a keras.applications encoder the builder takes a local weights file of
# the application body and freezes it itself (not run here: building MobileNetV2
# takes a while on a CPU):
#
# ```python
# model = ks.build_unet(
#     input_shape=(64, 64, 1),
#     encoder="mobilenet_v2",
#     encoder_weights="/path/to/mobilenet_v2_no_top.weights.h5",  # a local file
#     freeze_encoder=True,
# )
# ```
#
# `encoder_weights="imagenet"` would download the ImageNet weights once into
# Keras' cache; a local path never downloads.

# %%
weights_file = work_dir / "denoiser.weights.h5"
pretrained["denoiser"].save_weights(weights_file)
loaded = build()
loaded.load_weights(weights_file)
same = all(
    np.array_equal(a, b) for a, b in zip(loaded.get_weights(), pretrained["denoiser"].get_weights())
)
print(f"weights loaded from {weights_file.name}: identical to the denoiser's: {same}")


def n_params(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


counts = {
    "all trainable": (n_params(loaded.trainable_weights), n_params(loaded.non_trainable_weights))
}
ks.models.set_trainable(loaded, encoder=False)
counts["encoder frozen"] = (
    n_params(loaded.trainable_weights),
    n_params(loaded.non_trainable_weights),
)
for setting, (trainable, frozen) in counts.items():
    print(f"{setting:14s} trainable {trainable:>7,}  non-trainable {frozen:>7,}")
fig, ax = plt.subplots(figsize=(5, 2.6))
ax.barh(list(counts), [c[0] for c in counts.values()], label="trainable")
ax.barh(
    list(counts),
    [c[1] for c in counts.values()],
    left=[c[0] for c in counts.values()],
    label="non-trainable",
)
ax.set(xlabel="parameters", title="set_trainable(model, encoder=False)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Fine-tune
#
# `ks.models.replace_head(model, 1, activation="sigmoid")` keeps every layer up to
# the decoder's last block (shared with the pretrained model: fine-tuning changes
# both, so each fine-tuning starts from a fresh copy of the pretrained weights)
# and adds a new one-channel `out` convolution. Each model is trained on the first
# N labelled images with `ks.train(task="segmentation", loss="bce+dice")`, with
# the same steps, seed and learning rate; `scratch` is the same U-Net from a random
# initialisation. The pretrained model here is the denoiser; the benchmark also
# fine-tunes the plain autoencoder.

# %%
finetuned, scores = {}, {}
for n in N_LABELS:
    for init in ("pretrained", "scratch"):
        keras.utils.set_random_seed(n)
        base = build()
        if init == "pretrained":
            base.load_weights(weights_file)
        model = ks.models.replace_head(base, 1, activation="sigmoid")
        pairs = tf.data.Dataset.from_tensor_slices((labelled["image"][:n], labelled["mask"][:n]))
        run = ks.train(
            model,
            pairs,
            task="segmentation",
            loss="bce+dice",
            epochs=5,  # realistic: hundreds of steps
            steps_per_epoch=8,
            batch_size=BATCH,
            learning_rate=5e-3,
            validation_split=0.0,
            schedule=None,
            tensorboard=False,
            seed=0,
            verbose=0,
        )
        prob = model.predict(test["image"], verbose=0)
        finetuned[n, init] = (run, prob)
        scores[n, init] = overlap_scores(test["mask"], prob)
        iou, dice = scores[n, init]
        print(f"small-mode N={n} {init} IoU {iou:.3f} Dice {dice:.3f}")

fig, axes = plt.subplots(1, len(N_LABELS), figsize=(4.2 * len(N_LABELS), 3), squeeze=False)
for ax, n in zip(axes[0], N_LABELS):
    for init in ("pretrained", "scratch"):
        ax.plot(finetuned[n, init][0].history["loss"], marker="o", label=init)
    ax.set(xlabel="epoch", ylabel="bce + dice (training)", title=f"N = {n} labels")
    ax.legend(fontsize=8)
fig.suptitle("Fine-tuning loss: pretrained denoiser vs from scratch")
fig.tight_layout()
plt.show()

# %% [markdown]
# The predicted masks (threshold 0.5) of the models trained on the most labels:

# %%
n = max(N_LABELS)
fig, axes = plt.subplots(len(shown), 4, figsize=(6.4, 1.6 * len(shown)), squeeze=False)
for row, k in enumerate(shown):
    panels = [test["image"][k, ..., 0], test["mask"][k, ..., 0]]
    panels += [finetuned[n, init][1][k, ..., 0] >= 0.5 for init in ("pretrained", "scratch")]
    for col, panel in enumerate(panels):
        axes[row, col].imshow(panel, cmap="gray", vmin=0, vmax=1)
        axes[row, col].set_xticks([])
        axes[row, col].set_yticks([])
for col, title in enumerate(["input", "ground truth", "pretrained", "scratch"]):
    axes[0, col].set_title(f"{title}\n(N={n})" if col > 1 else title, fontsize=8)
fig.tight_layout()
plt.show()
print(f"{'N':>4s}{'pretrained IoU / Dice':>24s}{'scratch IoU / Dice':>22s}")
for n in N_LABELS:
    p, s = scores[n, "pretrained"], scores[n, "scratch"]
    print(f"{n:4d}{p[0]:15.3f} / {p[1]:.3f}{s[0]:13.3f} / {s[1]:.3f}")

# %% [markdown]
# ## The benchmark
#
# `bench/bench_transfer.py` runs the full study: the same recipes with longer
# trainings, N = 8, 32 and 128 labels, two seeds (each seed its own pretraining,
# initialisation and labelled set), and both pretrained models. This notebook
# reads its committed results, `bench/results/transfer.json` (the command, the
# machine and every run are in the file and in `bench/README.md`).

# %%
bench = json.loads(find_bench_file("transfer.json").read_text())
args = bench["args"]
print(bench["command"])
print(bench["machine"])
print(
    f"{args['category']} {args['image_size']}x{args['image_size']}, U-Net depth {args['depth']}, "
    f"pretraining {args['pretrain_epochs'] * args['pretrain_steps']} steps, "
    f"fine-tuning {args['finetune_epochs'] * args['finetune_steps']} steps, seeds {args['seeds']}"
)
for name, m in bench["pretraining_means"].items():
    print(
        f"bench pretraining {name} repair ratio {m['repair_ratio']:.4f} "
        f"PSNR(output, input) {m['psnr_output_vs_input_defective']:.4f} dB"
    )
inits = list(next(iter(bench["means"].values())))
for n, per_init in bench["means"].items():
    for init in inits:
        m = per_init[init]
        print(f"bench N={n} {init} IoU {m['iou']:.4f} Dice {m['dice']:.4f}")

# %%
ns = list(bench["means"])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
width = 0.8 / len(inits)
for ax, key in zip(axes, ("iou", "dice")):
    for j, init in enumerate(inits):
        x = np.arange(len(ns)) + (j - (len(inits) - 1) / 2) * width
        means = [bench["means"][n][init][key] for n in ns]
        bars = ax.bar(x, means, width, label=init)
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
        for xi, n in zip(x, ns):  # every seed, not only the mean
            per_seed = bench["means"][n][init][f"{key}_per_seed"]
            ax.plot([xi] * len(per_seed), per_seed, "k.", ms=3)
    ax.set_xticks(np.arange(len(ns)), [f"N={n}" for n in ns])
    ax.set(ylabel=key.upper() if key == "iou" else "Dice", ylim=(0, 1))
    ax.legend(fontsize=8)
fig.suptitle("Benchmark: test IoU and Dice per number of labels (bars: mean, dots: seeds)")
fig.tight_layout()
plt.show()

# %%
fig, axes = plt.subplots(1, len(ns), figsize=(4 * len(ns), 3), squeeze=False)
for ax, n in zip(axes[0], ns):
    for j, init in enumerate(inits):
        for r in bench["runs"]:
            if str(r["n_labels"]) == n and r["init"] == init:
                ax.plot(
                    r["curves"]["val_loss"],
                    color=f"C{j}",
                    alpha=0.8,
                    label=init if r["seed"] == args["seeds"][0] else None,
                )
    ax.set(xlabel="epoch", ylabel="validation bce + dice", title=f"N = {n}")
    ax.legend(fontsize=7)
fig.suptitle("Benchmark: validation loss of every fine-tuning run")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Reading the results.** The small-mode numbers above come from a few dozen
# steps and one seed; the benchmark's are the ones to read
# (`bench/README.md#transfer-benchmark`). In the recorded run (gravel, 200
# fine-tuning steps) the plain autoencoder copied its input (mean repair ratio
# 1.06, against 2.05 for the denoiser, and an output closer to the defective
# input). Every fine-tuned model learned something, none learned it well (test
# IoU 0.08-0.25), and the differences between the initialisations were of the
# size of the differences between the two seeds: the run does not show whether
# pretraining helps. Only at N = 128 did the plain-pretrained model beat the one
# from scratch in both seeds. Longer fine-tuning and more seeds are the next
# things to measure; a first run on mesh with 120 steps is in the README too.
