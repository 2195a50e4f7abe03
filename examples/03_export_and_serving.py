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
# # Export and serving: a SavedModel that scores images on its own
#
# **Description:** export a trained AESc as a TensorFlow SavedModel whose
# signature returns the reconstruction, the anomaly map, the image score and the
# anomaly decision, reload it with plain `tf.saved_model.load`, and export a
# `.keras` file that loads with `safe_mode=True`.
#
# ## Introduction
#
# In production, a model is loaded by TF Serving or by another process that
# should not need this package. `keras_skipae.export_saved_model` writes a
# SavedModel whose graph *is* the scoring code that `evaluate` runs
# (`keras_skipae.scoring.compute`: residual map, Gaussian smoothing, max score),
# so served scores equal the in-process ones, and it checks that before writing.
# The scoring settings and the threshold travel with the export in a readable
# JSON asset, nothing is hidden.
#
# Signatures:
#
# | signature | input `images` | outputs |
# |---|---|---|
# | `serving_default` | float32 `[B, H, W, C]` in [0, 1] | `reconstruction`, `anomaly_map`, `score`, `is_anomalous` (with a threshold) |
# | `serving_uint8` | uint8 `[B, H, W, C]` in [0, 255] | the same |
# | `reconstruct`, `reconstruct_uint8` | as above | `reconstruction` |
#
# **Small settings**: 64x64 grayscale synthetic images, a 4-level AESc with 8
# base filters and 64 training steps, so the whole notebook runs in about a minute
# on a 2-core CPU. The export works the same at realistic sizes (256x256,
# `depth=6, filters=16`, 100+ epochs: see notebook 01).

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
from keras_skipae import plotting

# keras_skipae.plotting selects the headless Agg backend when imported;
# switch back to inline figures for the notebook.
# %matplotlib inline

tf.get_logger().setLevel("ERROR")  # no "Assets written to ..." lines
keras.utils.set_random_seed(0)
IMAGE_SIZE = 64  # realistic: 256
CATEGORY = "nut"
work_dir = Path(tempfile.mkdtemp(prefix="skipae_export_"))
print("Working folder:", work_dir)

# %% [markdown]
# ## Data
#
# Synthetic images in the MVTec AD layout (see notebook 01). Eight good training
# images are held out: they set the production threshold.

# %%
root = ks.data.synthetic.make_dataset(
    work_dir / "data",
    categories=[CATEGORY],
    image_size=IMAGE_SIZE,
    n_train=32,
    n_test_good=6,
    n_test_defect=2,
    seed=0,
)
good = ks.data.mvtec_dataset(root, CATEGORY, split="train", image_size=IMAGE_SIZE)
test = ks.data.mvtec_dataset(root, CATEGORY, split="test", image_size=IMAGE_SIZE)
val, train = good.take(8), good.skip(8)
test_batch = next(iter(test.batch(64).as_numpy_iterator()))
defect_types = [d.decode() for d in test_batch["defect_type"]]
print(len(defect_types), "test images:", sorted(set(defect_types)))

# %%
picks = [defect_types.index(d) for d in dict.fromkeys(defect_types)]
fig = plotting.plot_defect_examples(
    test_batch["image"][picks],
    test_batch["mask"][picks],
    [defect_types[i] for i in picks],
    title="Test images (ground truth outlined in red)",
    columns=len(picks),
)
plt.show()

# %% [markdown]
# ## Build the model
#
# An AESc with a fixed input size. (Build it with `input_shape=(None, None, 1)`
# and the export accepts any size that is a multiple of `2**depth`.)

# %%
model = ks.build_aesc(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1), depth=4, filters=8, bn_momentum=0.9)
print(f"{model.name}: {model.count_params():,} parameters, input {model.input_shape}")

# %% [markdown]
# Before training, the reconstruction is a blur of the input: the skips pass a
# little of it through random weights.

# %%
before = model.predict(test_batch["image"][:4], verbose=0)
fig, axes = plt.subplots(2, 4, figsize=(7.5, 4))
for j in range(4):
    axes[0, j].imshow(test_batch["image"][j, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[1, j].imshow(before[j, ..., 0], cmap="gray", vmin=0, vmax=1)
for ax, label in zip(axes[:, 0], ("input", "untrained\nreconstruction")):
    ax.set_ylabel(label)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("The AESc before training")
plt.show()

# %% [markdown]
# ## Train
#
# A short run with stains (`corruption="auto"`).

# %%
run = ks.train(
    model,
    train,
    val_data=val,
    epochs=8,  # realistic: 100+
    steps_per_epoch=8,  # batches per epoch (the training images repeat); default: one pass
    batch_size=8,  # realistic: 16
    learning_rate=3e-3,  # realistic: 1e-3
    seed=0,
    verbose=0,
)
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(run.history["loss"], label="training loss")
ax.plot(run.history["val_loss"], label="validation loss")
ax.set(xlabel="epoch", ylabel="MSE (stained -> clean)", yscale="log", title="Training")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Score anomalies
#
# `evaluate` scores the test set and sets the production threshold from the
# held-out good images (the 99th percentile of their scores). That threshold is
# what we export.

# %%
result = ks.evaluate(model, test, val_data=val, progress=False)
print(f"image AUROC {result.image_auroc:.3f}, pixel AUROC {result.pixel_auroc:.3f}")
print(f"threshold {result.threshold:.4f} ({result.threshold_source})")
fig = plotting.plot_score_histogram(
    result.scores,
    result.labels,
    threshold=result.threshold,
    threshold_label="exported threshold",
    title="In-process image scores",
)
plt.show()

# %% [markdown]
# ## Export a SavedModel
#
# `export_saved_model` writes to a temporary folder, reloads it, checks that it
# reproduces the in-process scores, and only then renames it into place. It
# refuses to replace an existing folder unless `overwrite=True`.

# %%
export_dir = ks.export_saved_model(model, work_dir / "aesc_nut", threshold=result.threshold)
for item in sorted(export_dir.rglob("*")):
    print(" ", item.relative_to(export_dir))

# %% [markdown]
# The settings asset says exactly how the export scores (and needs no
# TensorFlow to read):

# %%
settings = json.loads((export_dir / "assets" / "keras_skipae.json").read_text())
summary = {key: settings[key] for key in ("scoring", "threshold")}
summary["input"] = {key: settings["input"][key] for key in ("image_size", "channels", "color_mode")}
print(json.dumps(summary, indent=1))

# %% [markdown]
# ## Serve it with plain TensorFlow
#
# Whoever loads the export needs TensorFlow only: `tf.saved_model.load` and a
# signature call, as TF Serving does. Here we send raw 8-bit pixels to the
# `serving_uint8` signature (`serving_default` takes float32 in [0, 1]).

# %%
loaded = tf.saved_model.load(str(export_dir))
print("signatures:", sorted(loaded.signatures))
serve = loaded.signatures["serving_uint8"]
print(serve.structured_outputs)

images_u8 = np.round(test_batch["image"] * 255).astype(np.uint8)
served = serve(images=tf.constant(images_u8))
print("is_anomalous:", served["is_anomalous"].numpy().astype(int))
print("labels:      ", test_batch["label"])

# %% [markdown]
# To be sure nothing of keras_skipae is needed, score the same images in a fresh
# Python process that imports TensorFlow and NumPy only (this is what a serving
# host does; it costs a TensorFlow import, a few seconds):

# %%
import subprocess
import sys

np.save(work_dir / "images_u8.npy", images_u8)
serving_script = f"""
import sys
import numpy as np
import tensorflow as tf
served = tf.saved_model.load({str(export_dir)!r}).signatures["serving_uint8"]
out = served(images=tf.constant(np.load({str(work_dir / "images_u8.npy")!r})))
print("fresh process:  ", " ".join(f"{{v:.4f}}" for v in out["score"].numpy()))
print("keras_skipae imported:", any(m.startswith("keras_skipae") for m in sys.modules))
"""
fresh = subprocess.run(
    [sys.executable, "-c", serving_script],
    capture_output=True,
    text=True,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    check=True,
)
print(fresh.stdout)
print("this process:   ", " ".join(f"{v:.4f}" for v in served["score"].numpy()))

# %% [markdown]
# The served map equals the in-process one (`keras_skipae.scoring.compute`, what
# `evaluate` runs) up to float32 rounding:

# %%
in_process = ks.scoring.compute(model, images_u8)
diff = np.abs(served["anomaly_map"].numpy() - in_process["anomaly_map"].numpy()).max()
print(f"max |served - in-process| anomaly map: {diff:.2e}")
print(
    f"max |served - in-process| score:       "
    f"{np.abs(served['score'].numpy() - in_process['score'].numpy()).max():.2e}"
)

# %%
order = np.argsort(-served["score"].numpy())
rows = list(order[:3]) + list(order[-1:])
fig = plotting.plot_anomaly_cases(
    test_batch["image"][rows],
    served["reconstruction"].numpy()[rows],
    served["anomaly_map"].numpy()[rows],
    test_batch["mask"][rows],
    titles=[
        f"{defect_types[i]}\nscore {served['score'][i]:.3f}\n"
        f"{'ANOMALOUS' if served['is_anomalous'][i] else 'ok'}"
        for i in rows
    ],
)
fig.suptitle("Served by the SavedModel (serving_uint8)", y=0.95)
plt.show()

# %% [markdown]
# ## Export a .keras file
#
# For further training or analysis in Keras, `export_keras` writes a `.keras`
# file. keras_skipae models use only built-in layers and two registered,
# weightless layers (no `Lambda`), so it loads with `safe_mode=True`. In a fresh
# process, `import keras_skipae.models` first: it registers those layers (a bare
# `import keras_skipae` is lazy and registers nothing).

# %%
keras_file = ks.export_keras(model, work_dir / "aesc_nut.keras")
reloaded = keras.models.load_model(keras_file, safe_mode=True)
same = np.abs(
    reloaded.predict(test_batch["image"], verbose=0) - model.predict(test_batch["image"], verbose=0)
).max()
print(f".keras reloaded with safe_mode=True: {reloaded.name}, max |difference| {same:.1e}")

# %%
recon = reloaded.predict(test_batch["image"][rows], verbose=0)
fig, axes = plt.subplots(2, len(rows), figsize=(2 * len(rows), 4))
for j, i in enumerate(rows):
    axes[0, j].imshow(test_batch["image"][i, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[0, j].set_title(defect_types[i], fontsize=9)
    axes[1, j].imshow(recon[j, ..., 0], cmap="gray", vmin=0, vmax=1)
for ax, label in zip(axes[:, 0], ("input", "reloaded .keras\nreconstruction")):
    ax.set_ylabel(label)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown]
# ## Export for a small device: LiteRT, full integer (int8)
#
# A Raspberry Pi, an Android tablet or a Coral board runs LiteRT files.
# `ks.export(model, path, format="litert", quantization="int8", calibration=...)`
# writes one `.tflite` file holding the same scoring graph (reconstruction, map,
# smoothing, score and the decision), with int8 weights and activations,
# calibrated on good training images, and uint8 input (scale 1/255). Before the
# file is moved into place it is run by LiteRT in a fresh process and compared
# with the in-process scores; the settings document lands beside it as
# `<file>.json`. (`format="onnx"` and `format="openvino"` work the same way, in
# float32: [docs/export.md](../docs/export.md#edge-formats).)

# %%
calibration = np.stack([e["image"].numpy() for e in train])  # the 24 good training images
tflite_file = ks.export(
    model,
    work_dir / "aesc_nut_int8.tflite",
    format="litert",
    quantization="int8",
    calibration=calibration,
    threshold=result.threshold,
)
edge_settings = json.loads(Path(f"{tflite_file}.json").read_text())
print(f"{tflite_file.name}: {tflite_file.stat().st_size / 1e3:.0f} kB")
print(json.dumps({k: edge_settings["runtime"][k] for k in ("quantization", "input_dtype")}))
print("verification:", edge_settings["verification"]["max_difference"]["score"])

# %% [markdown]
# On the device only the LiteRT runtime is needed (`pip install ai-edge-litert`,
# or the Android / C++ libraries): no TensorFlow, no keras_skipae. The file takes
# raw 8-bit pixels, one image per call:

# %%
from ai_edge_litert.interpreter import Interpreter

interpreter = Interpreter(model_path=str(tflite_file))
runner = interpreter.get_signature_runner("serving_default")
spec = runner.get_input_details()["images"]
print("input:", spec["dtype"].__name__, spec["shape"], "(scale, zero point):", spec["quantization"])
outputs = [runner(images=images_u8[i : i + 1]) for i in range(len(images_u8))]
int8_scores = np.concatenate([o["score"] for o in outputs])
int8_decisions = np.concatenate([o["is_anomalous"] for o in outputs])

# %% [markdown]
# Against the float SavedModel on the test images: the scores move by about a
# percent, and the decisions and the image AUROC are what to check on your own
# data before you deploy an int8 file (`bench/bench_export.py` measures them).

# %%
float_scores = served["score"].numpy()
labels = test_batch["label"]
print(f"largest score difference: {np.abs(int8_scores - float_scores).max():.4f}")
print(f"decisions agreeing: {np.mean(int8_decisions == served['is_anomalous'].numpy()):.0%}")
for name, scores in (("float SavedModel", float_scores), ("LiteRT int8", int8_scores)):
    print(f"{name:>16}: image AUROC {ks.evaluation.metrics.image_auroc(labels, scores):.3f}")
fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(float_scores, int8_scores, c=labels, cmap="coolwarm")
ax.axline((0, 0), slope=1, color="gray", lw=0.8)
ax.set(xlabel="float SavedModel score", ylabel="LiteRT int8 score", title="int8 vs float")
plt.show()

# %% [markdown]
# From the shell, the same exports come from a training run folder:
# `keras-skipae export runs/carpet saved_models/aesc_carpet --threshold ...`, and
# `saved_model_cli show --dir saved_models/aesc_carpet --all` lists the signatures;
# `keras-skipae export runs/carpet carpet_int8.tflite --format litert --quantization int8`
# calibrates on the run's training split.
