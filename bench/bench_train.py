"""Training-speed benchmark: Keras/TensorFlow vs a PyTorch peer, and speed-fix prototypes.

Trains ``ks.build_ae``, ``ks.build_aesc`` and ``ks.build_unet`` (default arguments
except ``input_shape=(S, S, 1)`` and ``depth``: 5 at 128x128 and 6 at 256x256 for
AE/AESc, the default 4 for the U-Net) in fp32, batch 16, Adam(1e-3), MSE, and prints
img/s (median over ``--repeats`` timed epochs of ``--steps`` steps, after
``--warmup`` warm-up epochs that include tracing), achieved GFLOP/s, the fraction of
the machine's measured convolution peak, the process CPU use (``cores``: CPU
seconds / wall seconds), and, when ``torch`` is importable, the same model in
PyTorch (``bench/torch_peer.py``, eager, channels-last) timed in between: TF epoch
i, then PyTorch repeat i, so both see the same machine load; the ratio TF/torch is
the median of those paired ratios. PyTorch runs in a child process
(``torch_peer.py --serve``, driven through a pipe) that never imports TensorFlow, so
neither framework's thread pools or bundled oneDNN can affect the other.

Columns: ``img/s`` (wall); ``img/cpu-s``, images per CPU second of the process (all
its threads); ``GF/cpu-s``, training-step convolution GFLOP per CPU second; ``%pk``,
that as a percentage of the best convolution peak per CPU second; ``cores``, CPU
seconds / wall seconds; ``TF/torch``, the paired ratio of wall speeds and
``(cpu)`` of CPU-time speeds; ``other``, the most cores that *other* processes used
during any timed block of the row (``/proc/stat`` busy time minus this benchmark's
own CPU time).

On a shared machine (``other`` above ~0.2) wall times are contaminated, and not
alike: PyTorch's OpenMP threads (libgomp) slow down several-fold when a core is
taken away, TF's thread pool much less. Then run ``--threads 1`` and compare the
CPU-time columns, which time-slicing barely changes.

Feeds (``--feeds``):

* ``cached``: a ``tf.data`` of one fixed batch, repeated (``model.fit``);
* ``pipeline``: ``ks.data.corrupt(ks.data.mvtec_dataset(...), ks.data.Stains())`` over
  a synthetic folder (``ks.data.synthetic.make_dataset``, category ``woven``),
  repeated, into ``model.fit``: stains are drawn on the same cores;
* ``train``: ``ks.train(model, images, ...)`` itself (stains, stain_weight 10,
  no metrics, no validation, no run folder), ``--warmup + --repeats`` epochs of
  ``--steps`` steps, the first ``--warmup`` untimed.

Variants (``--variants``, ``+``-joined tokens applied to the built model *without*
editing the package: the model is cloned with ``keras.models.clone_model`` and a
``clone_function``, weights copied; each variant's output is checked against the
baseline's for the same weights, in inference and in training mode, and so are its
gradients):

* ``baseline``: the package's model as it is;
* ``up``: ``UpSampling2D(2, "nearest")`` -> :class:`BroadcastUpSampling2D`
  (broadcast-and-reshape, gradient by TF's BroadcastTo gradient);
* ``upg``: the same forward with an explicit gradient (reshape + sum of 2x2 blocks);
* ``fbn``: ``BatchNormalization`` -> :class:`FusedBatchNormalization` (one
  ``FusedBatchNormV3`` op and its fused gradient instead of Keras 3's moments +
  elementwise normalisation; under ``mixed_bfloat16`` on bfloat16 inputs, with the
  statistics in float32, as the fused kernel keeps them);
* ``out32``: under a mixed policy, the output convolution computed in float32 (one
  float32 ``Conv2D`` ``out``, as the package built it before ``out_conv``) instead of
  the package's 16-bit ``out_conv`` + float32 ``out`` (outputs differ at bfloat16's
  resolution, so the check allows 2e-2). Its first run, as the prototype ``out16``
  (the reverse change, on the old package), is ``results/train_variants_amx_bf16.json``;
* ``spe4``, ``spe8``: ``compile(steps_per_execution=4 / 8)``.

``--jit off,on`` sets ``compile(jit_compile=...)`` (XLA). ``--precision
float32,mixed_bfloat16`` builds the model under those Keras dtype policies
(``keras_skipae.training.precision_scope``, as ``ks.train(precision=...)`` does;
the ``out`` layer stays float32; ``mixed_float16`` wraps Adam in a
``LossScaleOptimizer``); it is shown after the variant (``/bf16``, ``/fp16``).

``--interleave`` times the ``--jit`` x ``--precision`` configurations of each
model and size against each other instead (cached batch, no PyTorch): every
configuration is built, compiled and warmed up (``--warmup`` epochs), then the
timed epochs alternate between them, the order reversed every repeat (A B, B A,
...), so a drift in the load of a shared machine hits all of them; every repeat is
printed with the cores other processes used meanwhile.

``--compare-precision`` times ``ks.train`` itself in each ``--precision`` (e.g.
``float32,mixed_bfloat16``) for the same model and size, interleaved: repetition i
trains a fresh run per precision (order reversed every repetition), each of
``--warmup`` untimed epochs then ``--epochs-per-rep`` timed epochs of ``--steps``
steps on synthetic woven images. ``--train-recipe default`` is ``ks.train``'s defaults
(stains, metrics, validation split, schedule, a run folder with backups);
``bare`` drops metrics, validation, the run folder and ReduceLROnPlateau, as the
``train`` feed does. A row reports the step time (first batch to last batch of an
epoch) and the epoch time (epoch start to the next epoch's start: validation,
backups and callbacks included), as img/s, with the paired ratio of each precision to
the first. The run's resolved precision and the first convolution's compute dtype are
recorded, so a row shows whether 16 bits reached the training step.

``--suite`` runs the comparison table in one interleaved run: AE, AESc and U-Net
(``--models``, default all three) at ``--sizes`` (default 128 and 256; depth 5 at 128
and 6 at 256 for every model), in each ``--precision`` (default float32 and
mixed_bfloat16), each as a Keras ``fit`` on a fixed batch, ``ks.train`` with its default
recipe (a fresh run per repetition: ``--warmup`` untimed then ``--epochs-per-rep`` timed
epochs, epoch span) and the PyTorch peer (eager, channels-last; ``torch.autocast`` bf16
in the mixed_bfloat16 rows). Repetition i runs one block of every configuration of a
model and size, the order reversed every repetition. It writes ``--json`` and a Markdown
table (``--md``) headed by the CPU model name and flags. A quick check::

    python bench/bench_train.py --suite --models aesc --sizes 128 --repeats 2 \
        --json bench/results/suite_prelim.json --md bench/results/suite_prelim.md

``--head-variants`` times the learned head's training step against the AESc's
(cached batch, no PyTorch, interleaved as ``--interleave``): the AESc of the
size's default depth, then ``get_model("aesc_head")`` on the same base with each
variant (``+``-joined tokens of :data:`HEAD_VARIANTS`, e.g. ``head_scale2+small``;
``baseline`` is today's head), fed ``(x, (target, mask))``. A row prints the median
step time and the median of the paired ratios head step / AESc step (wall and CPU).

Every result's ``env.cpu`` records the CPU: model name, vendor and the full flag list
(``lscpu``, else ``/proc/cpuinfo``), and ``env.auto_precision`` what
``precision="auto"`` resolves to on it.

``--onednn 1`` sets
``TF_ENABLE_ONEDNN_OPTS=1`` before TensorFlow is imported: TF enables its oneDNN
kernels by default only on CPUs with AVX-512 VNNI / BF16 / AMX, so on an AVX2-only
CPU the default is TF's Eigen kernels (the header says which ran).

FLOP count (analytic, convolutions only; BN, activations, adds, upsampling, pooling
and the optimizer are not counted): a ``Conv2D`` costs ``2*Kh*Kw*Cin*Cout*Hout*Wout``
FLOPs per image (2 per multiply-add; the 1x1 skip projections, when present, and the
output convolution included); a ``Conv2DTranspose`` (U-Net) costs
``2*Kh*Kw*Cin*Cout*Hin*Win``, the multiply-adds it really does (each input pixel is
scattered through the kernel; it is the input gradient of the stride-2 convolution
of that cost; counting it with ``Hout*Wout`` would quadruple it). A training step
is counted as 3x the forward convolution FLOPs (forward, input gradient, weight
gradient; the first layer's unneeded input gradient is not subtracted). The count
is taken from the Keras model's layers and asserted equal to the PyTorch peer's
(forward hooks), and the parameter counts are asserted equal (Keras
``count_params()``, PyTorch parameters + BN running mean/var).

Peaks: a 2048x2048 float32 matmul and a 5x5 NHWC convolution forward (batch 16,
128x128, 64 -> 64 channels), in TF and (if present) PyTorch, best of 3; the
"of peak" columns divide by the larger of the two convolution peaks.

Threads: TF intra- and inter-op threads and ``torch.set_num_threads`` /
``set_num_interop_threads`` are all set to ``--threads`` (default: all CPUs).

Profile (``--profile PATH``): traces ``--profile-steps`` training steps of the first
model/size/variant with ``tf.profiler.experimental`` and writes the top ops (by self
time summed over threads) to PATH.

Run it under the shared lock so that benchmarks do not overlap::

    flock /tmp/keras_skipae_bench.lock .venv/bin/python bench/bench_train.py \\
        --models aesc --sizes 128 --variants baseline,up+fbn --json out.json

Needs ``pip install -e ".[bench]"`` for the PyTorch side (optional). Numbers are
printed; tests never assert them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 16
LR = 1e-3
HERE = Path(__file__).resolve().parent


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _sys_busy() -> float:
    """Busy CPU seconds of the whole machine (all processes), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(t) for t in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Waits (up to ``max_wait`` s) until other processes use < ``threshold`` cores over 1 s.

    Returns the last measured load of other processes (this process is idle meanwhile).
    """
    deadline = time.monotonic() + max_wait
    while True:
        s0, c0 = _sys_busy(), _cpu()
        time.sleep(1.0)
        load = max(0.0, _sys_busy() - s0 - (_cpu() - c0))
        if load < threshold or time.monotonic() >= deadline:
            return load
        time.sleep(1.0)


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return "unknown"
    model, flags = "?", set()
    for line in text.splitlines():
        if line.startswith("model name") and model == "?":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    keep = sorted(
        f for f in flags if f in ("avx", "avx2", "fma", "f16c") or f.startswith(("avx512", "amx"))
    )
    return f"{model}; flags: {' '.join(keep) or 'none of avx/avx2/avx512/amx'}"


def cpu_info() -> dict:
    """The CPU's model name, vendor, core count and full flag list (``lscpu``, else
    ``/proc/cpuinfo``)."""
    import subprocess

    fields = {}
    try:
        out = subprocess.run(
            ["lscpu"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            env={**os.environ, "LC_ALL": "C"},
        ).stdout
        for line in out.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        source = "lscpu"
    except (OSError, subprocess.SubprocessError):
        source = "/proc/cpuinfo"
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f.read().split("\n\n")[0].splitlines():
                    key, sep, value = line.partition(":")
                    if sep:
                        fields.setdefault(key.strip(), value.strip())
        except OSError:
            pass
    flags = sorted(set(fields.get("Flags", fields.get("flags", "")).split()))
    return {
        "source": source,
        "model_name": fields.get("Model name", fields.get("model name")),
        "vendor": fields.get("Vendor ID", fields.get("vendor_id")),
        "cpus": fields.get("CPU(s)", str(os.cpu_count())),
        "threads_per_core": fields.get("Thread(s) per core"),
        "caches": {k: v for k, v in fields.items() if k.endswith("cache")},
        "bf16": sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile")),
        "flags": flags,
    }


def default_depth(model: str, size: int):
    if model == "unet":
        return None  # the builder's default, 4
    return {128: 5, 256: 6}.get(size, max(2, size.bit_length() - 3))


# --------------------------------------------------------------------------- TF side


def setup_tf(threads: int, inter_op: int | None = None):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads if inter_op is None else inter_op)
    return tf


def onednn_active():
    """Whether TF runs its oneDNN kernels (off by default on CPUs without AVX-512 VNNI/AMX)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def make_layers():
    """The prototype layers (defined here, not in the package)."""
    import keras
    import tensorflow as tf
    from keras import ops

    class BroadcastUpSampling2D(keras.layers.Layer):
        """Nearest-neighbour 2x upsampling as broadcast + reshape (NHWC).

        Same output as ``keras.layers.UpSampling2D(2, interpolation="nearest")``;
        its gradient is a sum over the broadcast axes instead of the gradient of
        two ``repeat`` ops.
        """

        def __init__(self, explicit_grad: bool = False, **kwargs):
            super().__init__(**kwargs)
            self.explicit_grad = bool(explicit_grad)

        def call(self, x):
            if self.explicit_grad:
                return _up2_explicit(x)
            return _up2(x)

        def compute_output_shape(self, s):
            return (
                s[0],
                None if s[1] is None else 2 * s[1],
                None if s[2] is None else 2 * s[2],
                s[3],
            )

        def get_config(self):
            return {**super().get_config(), "explicit_grad": self.explicit_grad}

    def _dims(x):
        dyn = ops.shape(x)
        return (
            [d if d is not None else dyn[i] for i, d in enumerate(x.shape)]
            if None in x.shape
            else list(x.shape)
        )

    def _up2(x):
        b, h, w, c = _dims(x)
        x = ops.reshape(x, (b, h, 1, w, 1, c))
        x = ops.broadcast_to(x, (b, h, 2, w, 2, c))
        return ops.reshape(x, (b, 2 * h, 2 * w, c))

    @tf.custom_gradient
    def _up2_explicit(x):
        shape = tf.shape(x)

        def grad(dy):
            d = tf.reshape(dy, [shape[0], shape[1], 2, shape[2], 2, shape[3]])
            return tf.reduce_sum(d, axis=[2, 4])

        return _up2(x), grad

    class FusedBatchNormalization(keras.layers.BatchNormalization):
        """``BatchNormalization`` computed by TF's fused kernel (``FusedBatchNormV3``).

        Same variables and the same training-mode output (batch mean and biased
        batch variance). The moving variance is updated with the unbiased batch
        variance (the fused kernel's choice, as tf.keras 2 and PyTorch do; Keras 3
        uses the biased one). Falls back to Keras' path for anything but 4-D
        float32 channels-last inputs without mask or renorm.
        """

        def call(self, inputs, training=None, mask=None):
            axis = (
                self.axis
                if isinstance(self.axis, int)
                else (self.axis[0] if len(self.axis) == 1 else None)
            )
            if (
                mask is not None
                or self.renorm
                or len(inputs.shape) != 4
                or axis not in (3, -1)
                or inputs.dtype not in (tf.float32, tf.bfloat16)
                or not (self.center and self.scale)
            ):
                return super().call(inputs, training=training, mask=mask)
            f32 = lambda v: tf.cast(v.value, tf.float32)  # noqa: E731
            if training and self.trainable:
                y, mean, var, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                    x=inputs,
                    scale=f32(self.gamma),
                    offset=f32(self.beta),
                    mean=f32(self.moving_mean),
                    variance=f32(self.moving_variance),
                    epsilon=self.epsilon,
                    exponential_avg_factor=1.0 - self.momentum,
                    data_format="NHWC",
                    is_training=True,
                )
                self.moving_mean.assign(mean)
                self.moving_variance.assign(var)
                return y
            return tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=f32(self.gamma),
                offset=f32(self.beta),
                mean=f32(self.moving_mean),
                variance=f32(self.moving_variance),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=False,
            )[0]

    return BroadcastUpSampling2D, FusedBatchNormalization


def apply_variant(model, variant: str):
    """Clones ``model`` with the variant's layer replacements and copies its weights."""
    import keras

    tokens = set(variant.split("+")) - {"baseline"}
    unknown = tokens - {"up", "upg", "fbn", "out32", "spe4", "spe8"}
    if unknown:
        raise SystemExit(f"unknown variant tokens {sorted(unknown)} in {variant!r}")
    if not tokens & {"up", "upg", "fbn", "out32"}:
        return model
    Up, FBN = make_layers()

    def clone(layer):
        cfg = layer.get_config()
        if (
            tokens & {"up", "upg"}
            and isinstance(layer, keras.layers.UpSampling2D)
            and tuple(cfg["size"]) == (2, 2)
            and cfg["interpolation"] == "nearest"
            and cfg.get("data_format", "channels_last") == "channels_last"
        ):
            return Up(explicit_grad="upg" in tokens, name=layer.name)
        if "fbn" in tokens and type(layer) is keras.layers.BatchNormalization:
            return FBN.from_config(cfg)
        return layer.__class__.from_config(cfg)

    new = keras.models.clone_model(model, clone_function=clone)
    new.set_weights(model.get_weights())
    if "out32" in tokens and "out_conv" in [layer.name for layer in new.layers]:
        import keras_skipae as ks

        conv = new.get_layer("out_conv")
        activation = new.get_layer("out").get_config()["activation"]
        with ks.training.precision_scope("float32"):  # a float32 Conv2D `out`
            new = ks.replace_head(new, conv.filters, activation, name=new.name)
        new.get_layer("out").set_weights(conv.get_weights())
    return new


def steps_per_execution(variant: str) -> int:
    for tok in variant.split("+"):
        if tok.startswith("spe"):
            return int(tok[3:])
    return 1


def has_dropout(model) -> bool:
    import keras

    return any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


def check_variant(base, var, x, y) -> dict:
    """Max |difference| of outputs (inference, training) and max relative gradient gap."""
    import keras
    import numpy as np
    import tensorflow as tf

    out = {}
    a = keras.ops.convert_to_numpy(base(x, training=False))
    b = keras.ops.convert_to_numpy(var(x, training=False))
    out["max_abs_diff_inference"] = float(np.max(np.abs(a - b)))
    if has_dropout(base):
        out["max_abs_diff_training"] = None
        out["max_rel_grad_diff"] = None
        return out
    # Snapshot BN moving statistics: the training-mode calls below update them.
    saved_b, saved_v = base.get_weights(), var.get_weights()
    grads = []
    outs = []
    for m in (base, var):
        with tf.GradientTape() as tape:
            p = m(x, training=True)
            loss = tf.reduce_mean(tf.square(p - y))
        g = tape.gradient(loss, m.trainable_variables)
        grads.append([keras.ops.convert_to_numpy(t) for t in g])
        outs.append(keras.ops.convert_to_numpy(p))
    out["max_abs_diff_training"] = float(np.max(np.abs(outs[0] - outs[1])))
    rel = 0.0
    for ga, gb in zip(*grads):
        rel = max(rel, float(np.max(np.abs(ga - gb)) / (np.max(np.abs(ga)) + 1e-30)))
    out["max_rel_grad_diff"] = rel
    base.set_weights(saved_b)
    var.set_weights(saved_v)
    return out


def keras_conv_flops(model) -> int:
    """Forward convolution FLOPs per image (see the module docstring)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            kh, kw = layer.kernel_size
            _, h, w, cin = layer.input.shape
            total += 2 * kh * kw * cin * layer.filters * h * w
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            total += 2 * kh * kw * cin * cout * h * w
        elif isinstance(layer, keras.Model):
            raise SystemExit("nested models are not counted")
    return total


def build_keras(model_name: str, size: int, depth, precision: str = "float32"):
    import keras_skipae as ks
    from keras_skipae.training.runtime import precision_scope

    builder = {"ae": ks.build_ae, "aesc": ks.build_aesc, "unet": ks.build_unet}[model_name]
    kwargs = {"input_shape": (size, size, 1)}
    if depth is not None:
        kwargs["depth"] = depth
    with precision_scope(precision):
        return builder(**kwargs)


def make_optimizer(precision: str):
    import keras

    optimizer = keras.optimizers.Adam(LR)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


_SHORT = {"float32": "", "mixed_bfloat16": "/bf16", "mixed_float16": "/fp16"}


def run_interleaved(args, tf, keras, models, sizes, jits, precisions, peaks, rng) -> list:
    """Times every (jit, precision) configuration of a model/size in alternation (A B, B A)."""
    results = []
    for model_name in models:
        for size in sizes:
            depth = args.depth if args.depth is not None else default_depth(model_name, size)
            shape = (BATCH, size, size, 1)
            x = rng.random(shape, dtype="float32")
            y = rng.random(shape, dtype="float32")
            entries = []
            for precision in precisions:
                for jit in jits:
                    keras.utils.set_random_seed(0)
                    model = build_keras(model_name, size, depth, precision)
                    model.compile(optimizer=make_optimizer(precision), loss="mse", jit_compile=jit)
                    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
                    start = time.perf_counter()
                    hist = model.fit(ds, epochs=args.warmup, steps_per_epoch=args.steps, verbose=0)
                    warm = time.perf_counter() - start
                    label = f"{model_name} {size} jit {'on' if jit else 'off'} {precision}"
                    print(
                        f"  {label}: built, warm-up {warm:.1f} s, loss {hist.history['loss'][-1]:.4f}, "
                        f"output dtype {model.outputs[0].dtype}",
                        flush=True,
                    )
                    entries.append(
                        {
                            "jit": jit,
                            "precision": precision,
                            "model": model,
                            "ds": ds,
                            "timer": make_timer(0),
                            "label": label,
                            "warmup_s": warm,
                        }
                    )
            flops = keras_conv_flops(entries[0]["model"])
            step_flops = 3 * flops * BATCH
            for r in range(args.repeats):
                for e in entries if r % 2 == 0 else entries[::-1]:
                    e["model"].fit(
                        e["ds"],
                        epochs=1,
                        steps_per_epoch=args.steps,
                        callbacks=[e["timer"]],
                        verbose=0,
                    )
            for e in entries:
                timer = e["timer"]
                row = {
                    "model": model_name,
                    "size": size,
                    "depth": depth if depth is not None else 4,
                    "variant": "baseline",
                    "precision": e["precision"],
                    "jit": e["jit"],
                    "feed": "cached",
                    "steps": args.steps,
                    "params": e["model"].count_params(),
                    "forward_conv_gflop_per_img": flops / 1e9,
                    "warmup_s": e["warmup_s"],
                    "interleaved": True,
                }
                row.update(summarize("tf", timer.wall, timer.cpu, args.steps, step_flops, peaks))
                row["tf_other_load_cores_per_repeat"] = timer.foreign
                row["max_other_load_cores"] = max(timer.foreign)
                results.append(row)
                reps = " ".join(
                    f"{v:.1f}({c:.1f})" for v, c in zip(row["tf_img_s_per_repeat"], timer.foreign)
                )
                print(
                    f"{e['label']:40s} median {row['tf_img_s']:6.1f} img/s "
                    f"{row['tf_img_per_cpu_s']:6.1f} img/cpu-s; every repeat img/s (other "
                    f"cores): {reps}",
                    flush=True,
                )
            for e in entries:
                del e["model"]
            keras.backend.clear_session()
    return results


#: ``--head-variants`` tokens: ``get_model("aesc_head", ...)`` arguments (``+`` merges them).
HEAD_VARIANTS = {
    "baseline": {},
    "head_scale2": {"head_scale": 2},
    "head_scale4": {"head_scale": 4},
    "taps_residual": {"head_input": "taps+residual", "head_taps": "dec1_out"},
    "taps_residual2": {"head_input": "taps+residual", "head_taps": "dec0_out"},
    "frozen": {"freeze_base": True},
    "small": {"head_depth": 3, "head_filters": 8},
}


def head_variant_kwargs(variant: str) -> dict:
    kwargs = {}
    for tok in variant.split("+"):
        if tok not in HEAD_VARIANTS:
            raise SystemExit(f"unknown head variant {tok!r}; choose from {sorted(HEAD_VARIANTS)}")
        kwargs.update(HEAD_VARIANTS[tok])
    return kwargs


def run_head_variants(args, tf, keras, ks, sizes, rng) -> list:
    """Times the AESc and ``aesc_head`` variants in alternation; ratios to the AESc step."""
    variants = [v.strip() for v in args.head_variants.split(",") if v.strip()]
    results = []
    for size in sizes:
        depth = args.depth if args.depth is not None else default_depth("aesc", size)
        shape = (BATCH, size, size, 1)
        x = rng.random(shape, dtype="float32")
        mask = (rng.random(shape) > 0.9).astype("float32")
        entries = []
        for variant in ["aesc", *variants]:
            keras.utils.set_random_seed(0)
            kwargs = {} if variant == "aesc" else head_variant_kwargs(variant)
            name = "aesc" if variant == "aesc" else "aesc_head"
            model = ks.get_model(name, input_shape=(size, size, 1), depth=depth, **kwargs)
            model.compile(optimizer=make_optimizer("float32"), loss="mse")
            y = x if variant == "aesc" else (x, mask)
            ds = tf.data.Dataset.from_tensors((x, y)).repeat()
            start = time.perf_counter()
            model.fit(ds, epochs=args.warmup, steps_per_epoch=args.steps, verbose=0)
            warm = time.perf_counter() - start
            print(f"  {variant} {size}: built {kwargs}, warm-up {warm:.1f} s", flush=True)
            # analytic training-step conv FLOPs per image: forward + 2 backward passes of
            # what trains, the forward alone of a frozen base
            if variant == "aesc":
                flops = 3 * keras_conv_flops(model)
            else:
                base_passes = 1 if kwargs.get("freeze_base") else 3
                flops = base_passes * keras_conv_flops(model.base) + 3 * keras_conv_flops(
                    model.head
                )
            entries.append(
                {
                    "variant": variant,
                    "kwargs": kwargs,
                    "model": model,
                    "ds": ds,
                    "warm": warm,
                    "flops": flops,
                }
            )
            entries[-1]["timer"] = make_timer(0)
        for r in range(args.repeats):
            for e in entries if r % 2 == 0 else entries[::-1]:
                e["model"].fit(
                    e["ds"], epochs=1, steps_per_epoch=args.steps, callbacks=[e["timer"]], verbose=0
                )
        ref = entries[0]["timer"]
        print(f"\nhead step cost, {size}x{size}, AESc depth {depth}, batch {BATCH}:")
        print(
            f"{'variant':28s} {'params':>10s} {'ms/step':>8s} {'cpu ms':>8s} {'x AESc':>7s} "
            f"{'(cpu)':>6s} {'x flops':>7s} other"
        )
        for e in entries:
            t = e["timer"]
            row = {
                "model": "aesc" if e["variant"] == "aesc" else "aesc_head",
                "variant": e["variant"],
                "head_kwargs": e["kwargs"],
                "size": size,
                "depth": depth,
                "steps": args.steps,
                "params": e["model"].count_params(),
                "warmup_s": e["warm"],
                "step_ms": 1e3 * statistics.median(t.wall) / args.steps,
                "step_cpu_ms": 1e3 * statistics.median(t.cpu) / args.steps,
                "step_ms_per_repeat": [1e3 * w / args.steps for w in t.wall],
                "ratio_to_aesc": statistics.median(a / b for a, b in zip(t.wall, ref.wall)),
                "ratio_to_aesc_cpu": statistics.median(a / b for a, b in zip(t.cpu, ref.cpu)),
                "train_conv_gflop_per_img": e["flops"] / 1e9,
                "flop_ratio_to_aesc": e["flops"] / entries[0]["flops"],
                "other_load_cores_per_repeat": t.foreign,
                "max_other_load_cores": max(t.foreign),
            }
            results.append(row)
            print(
                f"{row['variant']:28s} {row['params']:10,d} {row['step_ms']:8.1f} "
                f"{row['step_cpu_ms']:8.1f} {row['ratio_to_aesc']:6.2f}x "
                f"{row['ratio_to_aesc_cpu']:5.2f}x {row['flop_ratio_to_aesc']:6.2f}x "
                f"{row['max_other_load_cores']:.2f}",
                flush=True,
            )
        for e in entries:
            del e["model"]
        keras.backend.clear_session()
    return results


def make_epoch_timer(skip_epochs: int):
    """Per epoch after ``skip_epochs``: the step span (first batch start to last batch end)
    and the epoch span (epoch start to the next epoch's start, or the end of training),
    wall and process CPU, and the cores other processes used during the epoch span."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step_wall, self.step_cpu, self.epoch_wall, self.epoch_cpu = [], [], [], []
            self.foreign, self._begin, self._t0 = [], None, None

        def _close_epoch(self):
            if self._begin is None:
                return
            epoch, t, c, b = self._begin
            now, cpu = time.perf_counter(), _cpu()
            if epoch >= skip_epochs:
                self.epoch_wall.append(now - t)
                self.epoch_cpu.append(cpu - c)
                self.step_wall.append(self._t1 - self._t0)
                self.step_cpu.append(self._c1 - self._c0)
                self.foreign.append(max(0.0, (_sys_busy() - b - (cpu - c)) / (now - t)))
            self._begin = None

        def on_epoch_begin(self, epoch, logs=None):
            self._close_epoch()
            self._begin, self._t0 = (epoch, time.perf_counter(), _cpu(), _sys_busy()), None

        def on_train_batch_begin(self, batch, logs=None):
            if self._t0 is None:
                self._t0, self._c0 = time.perf_counter(), _cpu()

        def on_train_batch_end(self, batch, logs=None):
            self._t1, self._c1 = time.perf_counter(), _cpu()

        def on_train_end(self, logs=None):
            self._close_epoch()

    return EpochTimer()


def run_train_precisions(args, keras, ks, models, sizes, precisions, images_for) -> list:
    """``ks.train`` in each precision, repetitions interleaved (A B, B A, ...): see the
    module docstring (``--compare-precision``)."""
    results = []
    for model_name in models:
        for size in sizes:
            depth = args.depth if args.depth is not None else default_depth(model_name, size)
            kwargs = {"input_shape": (size, size, 1)}
            if depth is not None:
                kwargs["depth"] = depth
            per = {p: {"timers": [], "resolved": [], "first_conv_dtype": []} for p in precisions}
            for r in range(args.repeats):
                for precision in precisions if r % 2 == 0 else precisions[::-1]:
                    if args.quiet_wait > 0:
                        wait_for_quiet(args.quiet_wait)
                    keras.utils.set_random_seed(0)
                    timer = make_epoch_timer(args.warmup)
                    recipe = {}
                    if args.train_recipe == "bare":
                        recipe = dict(
                            loss="mse",
                            metrics=(),
                            validation_split=0.0,
                            reduce_lr=False,
                            tensorboard=False,
                        )
                    with tempfile.TemporaryDirectory(prefix="ks_bench_run_") as run_tmp:
                        run = ks.train(
                            model_name,
                            images_for(size),
                            model_kwargs=kwargs,
                            epochs=args.warmup + args.epochs_per_rep,
                            steps_per_epoch=args.steps,
                            batch_size=BATCH,
                            precision=precision,
                            run_dir=None if args.train_recipe == "bare" else Path(run_tmp) / "r",
                            callbacks=[timer],
                            verbose=0,
                            **recipe,
                        )
                    conv = next(
                        layer
                        for layer in run.model.layers
                        if isinstance(layer, keras.layers.Conv2D)
                    )
                    entry = per[precision]
                    entry["timers"].append(timer)
                    entry["resolved"].append(
                        ks.runs.RunConfig.from_dict(run.config).runtime.precision
                    )
                    entry["first_conv_dtype"].append(conv.compute_dtype)
                    n = BATCH * args.steps
                    print(
                        f"  rep {r} {model_name} {size} {precision:15s} step "
                        + " ".join(f"{n / w:.1f}" for w in timer.step_wall)
                        + " img/s; epoch "
                        + " ".join(f"{n / w:.1f}" for w in timer.epoch_wall)
                        + " img/s; other cores "
                        + " ".join(f"{c:.1f}" for c in timer.foreign),
                        flush=True,
                    )
                    del run
                    keras.backend.clear_session()
            n = BATCH * args.steps
            base = per[precisions[0]]
            for precision in precisions:
                entry = per[precision]
                timers = entry["timers"]
                step = [w for t in timers for w in t.step_wall]
                epoch = [w for t in timers for w in t.epoch_wall]
                row = {
                    "model": model_name,
                    "size": size,
                    "depth": depth if depth is not None else 4,
                    "feed": f"ks.train ({args.train_recipe} recipe)",
                    "precision": precision,
                    "resolved_precision": sorted(set(entry["resolved"])),
                    "first_conv_compute_dtype": sorted(set(entry["first_conv_dtype"])),
                    "steps": args.steps,
                    "timed_epochs_per_rep": args.epochs_per_rep,
                    "step_img_s": statistics.median(n / w for w in step),
                    "epoch_img_s": statistics.median(n / w for w in epoch),
                    "step_img_per_cpu_s": statistics.median(
                        n / c for t in timers for c in t.step_cpu
                    ),
                    "step_img_s_per_rep": [
                        statistics.median(n / w for w in t.step_wall) for t in timers
                    ],
                    "epoch_img_s_per_rep": [
                        statistics.median(n / w for w in t.epoch_wall) for t in timers
                    ],
                    "other_load_cores_per_rep": [max(t.foreign) for t in timers],
                    "max_other_load_cores": max(c for t in timers for c in t.foreign),
                    "interleaved": True,
                }
                # paired ratios (same repetition): this precision's speed / the first one's
                for key in ("step", "epoch"):
                    row[f"{key}_ratio_to_{precisions[0]}"] = statistics.median(
                        statistics.median(getattr(b, f"{key}_wall"))
                        / statistics.median(getattr(t, f"{key}_wall"))
                        for t, b in zip(timers, base["timers"])
                    )
                results.append(row)
                print(
                    f"{model_name} {size} {precision:15s} ks.train: step {row['step_img_s']:6.1f} "
                    f"img/s, epoch {row['epoch_img_s']:6.1f} img/s; vs {precisions[0]}: step "
                    f"x{row['step_ratio_to_' + precisions[0]]:.2f}, epoch "
                    f"x{row['epoch_ratio_to_' + precisions[0]]:.2f}; ran in "
                    f"{row['resolved_precision']} (first conv {row['first_conv_compute_dtype']}); "
                    f"other cores <= {row['max_other_load_cores']:.1f}",
                    flush=True,
                )
    return results


SUITE_DEPTH = {128: 5, 256: 6}

#: The suite's frameworks: Keras ``fit`` on a fixed batch, ``ks.train`` with its default
#: recipe, PyTorch eager channels-last (autocast bf16 in the mixed_bfloat16 rows).
SUITE_FRAMEWORKS = ("keras_fit", "ks_train", "torch")


def run_suite(args, tf, keras, ks, worker, models, sizes, precisions, images_for, rng) -> list:
    """``--suite``: for each model and size, every precision x framework, interleaved.

    Repetition i runs one timed block of each configuration (the order reversed every
    repetition): a Keras ``fit`` epoch of ``--steps`` steps on a fixed batch (step span),
    a PyTorch block of ``--steps`` steps (autocast bf16 for ``mixed_bfloat16``), and a
    fresh ``ks.train`` run (default recipe, run folder) of ``--warmup`` untimed and
    ``--epochs-per-rep`` timed epochs (epoch span: validation and callbacks included).
    """

    results = []
    n = BATCH * args.steps
    for model_name in models:
        for size in sizes:
            depth = args.depth if args.depth is not None else SUITE_DEPTH.get(size)
            shape = (BATCH, size, size, 1)
            x = rng.random(shape, dtype="float32")
            y = rng.random(shape, dtype="float32")
            fits, torch_runner = {}, None
            for precision in precisions:
                keras.utils.set_random_seed(0)
                model = build_keras(model_name, size, depth, precision)
                model.compile(optimizer=make_optimizer(precision), loss="mse")
                ds = tf.data.Dataset.from_tensors((x, y)).repeat()
                model.fit(ds, epochs=args.warmup, steps_per_epoch=args.steps, verbose=0)
                fits[precision] = {"model": model, "ds": ds, "timers": []}
                if worker is not None and torch_runner is None and precision == "float32":
                    with tempfile.TemporaryDirectory(prefix="ks_bench_torch_") as tmpdir:
                        torch_runner = TorchRunner(
                            worker, model_name, size, depth, x, y, model, tmpdir
                        )
            if worker is not None and torch_runner is None:  # no float32 in --precision
                with tempfile.TemporaryDirectory(prefix="ks_bench_torch_") as tmpdir:
                    torch_runner = TorchRunner(
                        worker, model_name, size, depth, x, y, fits[precisions[0]]["model"], tmpdir
                    )
            blocks = [(fw, p) for p in precisions for fw in SUITE_FRAMEWORKS]
            if torch_runner is None:
                blocks = [b for b in blocks if b[0] != "torch"]
            torch_times = {p: [] for p in precisions}
            train_timers = {p: [] for p in precisions}
            train_resolved = {p: set() for p in precisions}
            for r in range(args.repeats):
                for fw, precision in blocks if r % 2 == 0 else blocks[::-1]:
                    if fw == "keras_fit":
                        f = fits[precision]
                        timer = make_epoch_timer(0)
                        f["model"].fit(
                            f["ds"],
                            epochs=1,
                            steps_per_epoch=args.steps,
                            callbacks=[timer],
                            verbose=0,
                        )
                        f["timers"].append(timer)
                    elif fw == "torch":
                        before = len(torch_runner.wall)
                        # one untimed block: the other precision's kernels ran last
                        torch_runner.worker.call(
                            cmd="run", steps=1, autocast=precision != "float32"
                        )
                        torch_runner.run(args.steps, autocast=precision != "float32")
                        torch_times[precision].append(
                            (torch_runner.wall[before], torch_runner.foreign[before])
                        )
                    else:
                        keras.utils.set_random_seed(0)
                        timer = make_epoch_timer(args.warmup)
                        kwargs = {"input_shape": (size, size, 1)}
                        if depth is not None:
                            kwargs["depth"] = depth
                        with tempfile.TemporaryDirectory(prefix="ks_bench_run_") as run_tmp:
                            run = ks.train(
                                model_name,
                                images_for(size),
                                model_kwargs=kwargs,
                                epochs=args.warmup + args.epochs_per_rep,
                                steps_per_epoch=args.steps,
                                batch_size=BATCH,
                                precision=precision,
                                run_dir=Path(run_tmp) / "r",
                                callbacks=[timer],
                                verbose=0,
                            )
                        train_resolved[precision].add(
                            ks.runs.RunConfig.from_dict(run.config).runtime.precision
                        )
                        del run
                        train_timers[precision].append(timer)
                    print(f"  rep {r} {model_name} {size} {precision} {fw} done", flush=True)
            for precision in precisions:
                fit_t = fits[precision]["timers"]
                fit_w = [t.step_wall[0] for t in fit_t]
                row = {
                    "model": model_name,
                    "size": size,
                    "depth": depth,
                    "precision": precision,
                    "steps": args.steps,
                    "repeats": args.repeats,
                    "keras_fit_img_s": statistics.median(n / w for w in fit_w),
                    "keras_fit_img_s_per_rep": [n / w for w in fit_w],
                }
                other = [f for t in fit_t for f in t.foreign]
                tt = train_timers[precision]
                if tt:
                    ep = [statistics.median(t.epoch_wall) for t in tt]
                    st = [statistics.median(t.step_wall) for t in tt]
                    row.update(
                        ks_train_epoch_img_s=statistics.median(n / w for w in ep),
                        ks_train_step_img_s=statistics.median(n / w for w in st),
                        ks_train_epoch_img_s_per_rep=[n / w for w in ep],
                        ks_train_resolved_precision=sorted(train_resolved[precision]),
                        # paired (same repetition): fit's epoch time / ks.train's epoch time
                        ks_train_over_fit=statistics.median(f / e for f, e in zip(fit_w, ep)),
                    )
                    other += [f for t in tt for f in t.foreign]
                tw = torch_times[precision]
                if tw:
                    row.update(
                        torch=f"eager channels-last{' autocast bf16' if precision != 'float32' else ''}",
                        torch_img_s=statistics.median(n / w for w, _ in tw),
                        torch_img_s_per_rep=[n / w for w, _ in tw],
                        keras_fit_over_torch=statistics.median(
                            w / f for f, (w, _) in zip(fit_w, tw)
                        ),
                        torch_channels_last=torch_runner.channels_last,
                        torch_exact_max_abs_diff=torch_runner.exact_max_abs_diff,
                    )
                    other += [c for _, c in tw]
                row["max_other_load_cores"] = max(other)
                results.append(row)
                print(
                    f"{model_name} {size} d{depth} {precision:15s} fit "
                    f"{row['keras_fit_img_s']:6.1f} img/s"
                    + (
                        f", ks.train {row['ks_train_epoch_img_s']:6.1f} "
                        f"(x{row['ks_train_over_fit']:.2f} of fit)"
                        if tt
                        else ""
                    )
                    + (
                        f", torch {row['torch_img_s']:6.1f} (fit/torch "
                        f"x{row['keras_fit_over_torch']:.2f})"
                        if tw
                        else ""
                    )
                    + f"; other cores <= {row['max_other_load_cores']:.1f}",
                    flush=True,
                )
            fits.clear()
            keras.backend.clear_session()
    return results


def suite_markdown(env, results, command) -> str:
    """The ``--suite`` results as a Markdown table, headed by the CPU and the command."""
    cpu = env.get("cpu") or {}
    lines = [
        f"CPU: {cpu.get('model_name', env.get('machine'))}",
        "",
        f"Flags: {env.get('machine')}",
        "",
        f"TF {env['tensorflow']}, Keras {env['keras']}, torch {env['torch']}; threads "
        f"{env['threads']['tf_intra_op']}; batch {BATCH}; {env['steps']} steps per block, "
        f"{env['repeats']} interleaved repetitions; medians (ratios: medians of paired ratios).",
        "",
        f"Command: `{command}`",
        "",
        "| model | size | depth | precision | Keras fit img/s | ks.train img/s (epoch) "
        "| ks.train / fit | PyTorch img/s | fit / PyTorch | other cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(row, key, fmt):
        return fmt.format(row[key]) if key in row else "-"

    for r in results:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['depth']} | {r['precision']} "
            f"| {f(r, 'keras_fit_img_s', '{:.1f}')} | {f(r, 'ks_train_epoch_img_s', '{:.1f}')} "
            f"| {f(r, 'ks_train_over_fit', '{:.2f}')} | {f(r, 'torch_img_s', '{:.1f}')} "
            f"| {f(r, 'keras_fit_over_torch', '{:.2f}')} "
            f"| {r['max_other_load_cores']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def make_timer(skip_epochs: int, between=None):
    import keras

    class Timer(keras.callbacks.Callback):
        """Wall and process-CPU time of each epoch, first batch start to last batch end."""

        def __init__(self):
            super().__init__()
            self.wall, self.cpu, self.foreign = [], [], []
            self._t0 = None

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = None

        def on_train_batch_begin(self, batch, logs=None):
            if self._t0 is None:
                self._t0, self._c0, self._s0 = time.perf_counter(), _cpu(), _sys_busy()

        def on_train_batch_end(self, batch, logs=None):
            self._t1, self._c1, self._s1 = time.perf_counter(), _cpu(), _sys_busy()

        def on_epoch_end(self, epoch, logs=None):
            if epoch < skip_epochs:
                return
            wall = self._t1 - self._t0
            self.wall.append(wall)
            self.cpu.append(self._c1 - self._c0)
            # cores used by other processes meanwhile (this one's CPU time subtracted)
            self.foreign.append(max(0.0, (self._s1 - self._s0 - (self._c1 - self._c0)) / wall))
            if between is not None:
                between(len(self.wall) - 1)

    return Timer()


# --------------------------------------------------------------------------- torch side


class TorchWorker:
    """The PyTorch side, in its own process (``torch_peer.py --serve``).

    Importing TensorFlow and PyTorch into one process made PyTorch 5-20x slower on
    this machine (both bundle oneDNN; PyTorch then ran on about one core), so the
    peer runs in a child process that never imports TensorFlow, driven step-block
    by step-block through a pipe, which keeps the TF/torch interleaving.
    """

    def __init__(self, threads: int):
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "torch_peer.py"), "--serve", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the PyTorch worker exited")
        return json.loads(line)

    def call(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=30)


class TorchRunner:
    """The PyTorch peer of one model/size in the worker, trained on the same fixed batch."""

    def __init__(self, worker, model_name, size, depth, x, y, keras_model, tmpdir, warmup_steps=2):
        import numpy as np

        arrays = {"x": x, "y": y, "keras_out": np.asarray(keras_model(x, training=False))}
        for layer in keras_model.layers:
            for i, w in enumerate(layer.get_weights()):
                arrays[f"w/{layer.name}/{i}"] = np.asarray(w)
        npz = Path(tmpdir) / f"torch_{model_name}_{size}.npz"
        np.savez(npz, **arrays)
        r = worker.call(
            cmd="init",
            model=model_name,
            size=size,
            depth=depth,
            npz=str(npz),
            lr=LR,
            warmup=warmup_steps,
        )
        self.worker = worker
        self.params, self.flops = r["params"], r["flops"]
        self.channels_last = r["channels_last"]
        self.exact_max_abs_diff = r["exact_max_abs_diff"]
        self.wall, self.cpu, self.foreign = [], [], []

    def run(self, steps, autocast: bool = False):
        s0, c0 = _sys_busy(), _cpu()
        r = self.worker.call(cmd="run", steps=steps, autocast=autocast)
        busy = _sys_busy() - s0 - r["cpu"] - (_cpu() - c0)
        self.wall.append(r["wall"])
        self.cpu.append(r["cpu"])
        self.foreign.append(max(0.0, busy / r["wall"]))


# --------------------------------------------------------------------------- peaks


def _best(fn, reps=3):
    """Best wall and best process-CPU seconds of ``reps`` calls after one warm-up call."""
    fn()
    bw = bc = float("inf")
    for _ in range(reps):
        t, c = time.perf_counter(), _cpu()
        fn()
        bw, bc = min(bw, time.perf_counter() - t), min(bc, max(_cpu() - c, 1e-9))
    return bw, bc


def measure_peaks(tf, worker) -> dict:
    """Matmul and conv peaks in GFLOP per wall second and per CPU second (best of 3)."""
    import numpy as np

    n = 2048
    mm_flops = 2 * n**3
    conv_shape, k, cin, cout = (BATCH, 128, 128, 64), 5, 64, 64
    conv_flops = 2 * k * k * cin * cout * BATCH * 128 * 128
    rng = np.random.default_rng(0)
    ta = tf.constant(rng.random((n, n), dtype=np.float32))
    tx = tf.constant(rng.random(conv_shape, dtype=np.float32))
    tw = tf.constant(rng.random((k, k, cin, cout), dtype=np.float32))
    mm = tf.function(lambda: tf.matmul(ta, ta))
    cv = tf.function(lambda: tf.nn.conv2d(tx, tw, 1, "SAME"))
    peaks = {}
    for key, flops, fn in (
        ("tf_matmul", mm_flops, lambda: mm().numpy()),
        ("tf_conv5x5", conv_flops, lambda: cv().numpy()),
    ):
        bw, bc = _best(fn)
        peaks[f"{key}_gflops"] = flops / bw / 1e9
        peaks[f"{key}_gflops_per_cpu_s"] = flops / bc / 1e9
    if worker is not None:
        peaks.update(worker.call(cmd="peaks"))
    peaks["conv_peak_gflops"] = max(
        v for key, v in peaks.items() if "conv" in key and key.endswith("_gflops")
    )
    peaks["conv_peak_gflops_per_cpu_s"] = max(
        v for key, v in peaks.items() if "conv" in key and key.endswith("_per_cpu_s")
    )
    return peaks


# --------------------------------------------------------------------------- profile


def profile_steps(tf, model, ds, steps: int, out_path: Path, title: str) -> None:
    """Traces ``steps`` training steps and writes the top ops by self time."""
    import collections

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    logdir = Path(tempfile.mkdtemp(prefix="ks_prof_"))
    t = time.perf_counter()
    tf.profiler.experimental.start(str(logdir))
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    tf.profiler.experimental.stop()
    wall = time.perf_counter() - t
    files = sorted(logdir.rglob("*.xplane.pb"))
    if not files:
        raise SystemExit(f"no xplane.pb under {logdir}")
    space = xplane_pb2.XSpace()
    space.ParseFromString(files[-1].read_bytes())
    by_type = collections.Counter()
    by_name = collections.Counter()
    count = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        meta = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            # self time: an event's duration minus its children's (events nested in it)
            evs = sorted(
                (
                    (e.offset_ps, e.offset_ps + e.duration_ps, meta.get(e.metadata_id, "?"))
                    for e in line.events
                ),
                key=lambda e: (e[0], -e[1]),
            )
            stack = []
            selfs = {}
            for i, (s, e, _name) in enumerate(evs):
                while stack and stack[-1][1] <= s:
                    stack.pop()
                if stack:
                    parent = stack[-1][2]
                    selfs[parent] = selfs.get(parent, 0) - (e - s)
                selfs[i] = selfs.get(i, 0) + (e - s)
                stack.append((s, e, i))
            for i, (_s, _e, name) in enumerate(evs):
                # TF ops are traced as "node/name:OpType"; skip runtime events such as
                # "KernelAndDeviceFunc::Run" (the caller waiting for the ops it runs).
                op_name, _, op_type = name.rpartition(":")
                if (
                    not op_name
                    or "::" in name
                    or not re.fullmatch(r"_?[A-Z][A-Za-z0-9_]*", op_type)
                ):
                    continue
                by_type[op_type] += selfs[i]
                by_name[name] += selfs[i]
                count[op_type] += 1
    total = sum(by_type.values())
    lines = [
        title,
        f"{steps} traced steps, {wall:.2f} s wall while tracing ({wall / steps:.3f} s/step; "
        f"tracing adds overhead). Op self time summed over threads: {total / 1e12:.2f} s "
        f"({total / 1e12 / steps:.3f} s/step; more than wall when ops run concurrently).",
        "",
        "Top op types by self time (share of summed op time; per step):",
        f"{'op type':44s} {'share':>7s} {'ms/step':>9s} {'calls/step':>10s}",
    ]
    for op_type, ps in by_type.most_common(25):
        lines.append(
            f"{op_type:44s} {100 * ps / total:6.1f}% {ps / 1e9 / steps:9.1f} {count[op_type] / steps:10.1f}"
        )
    lines += ["", "Top 25 single ops (name:type) by self time:"]
    for name, ps in by_name.most_common(25):
        lines.append(f"{name[-90:]:90s} {100 * ps / total:6.1f}% {ps / 1e9 / steps:8.1f} ms/step")
    text = "\n".join(lines) + "\n"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    print(text)


# --------------------------------------------------------------------------- table

HEADER = (
    f"{'model':5s} {'size':>4s} {'d':>1s} {'variant':11s} {'jit':3s} {'feed':8s}|"
    f"{'TF img/s':>8s} {'img/cpu-s':>9s} {'GF/cpu-s':>8s} {'%pk':>4s} {'cores':>5s}|"
    f"{'torch img/s':>11s} {'img/cpu-s':>9s} {'GF/cpu-s':>8s} {'%pk':>4s} {'cores':>5s}|"
    f"{'TF/torch':>8s} {'(cpu)':>6s} {'other':>5s}"
)


def summarize(prefix, wall, cpu, steps, step_flops, peaks) -> dict:
    """Medians of one framework's timed blocks: img/s, img per CPU s, GFLOP/s, % of peak."""
    w, c = statistics.median(wall), statistics.median(cpu)
    out = {
        f"{prefix}_img_s": BATCH * steps / w,
        f"{prefix}_img_s_per_repeat": [BATCH * steps / x for x in wall],
        f"{prefix}_img_per_cpu_s": BATCH * steps / c,
        f"{prefix}_gflops": step_flops * steps / w / 1e9,
        f"{prefix}_gflops_per_cpu_s": step_flops * steps / c / 1e9,
        f"{prefix}_cores_busy": statistics.median(b / a for a, b in zip(wall, cpu)),
    }
    pk = peaks.get("conv_peak_gflops_per_cpu_s")
    out[f"{prefix}_frac_conv_peak_cpu"] = out[f"{prefix}_gflops_per_cpu_s"] / pk if pk else None
    pk = peaks.get("conv_peak_gflops")
    out[f"{prefix}_frac_conv_peak"] = out[f"{prefix}_gflops"] / pk if pk else None
    return out


def format_row(r) -> str:
    def side(p, width):
        if f"{p}_img_s" not in r:
            return " " * (width + 32)
        pk = r[f"{p}_frac_conv_peak_cpu"]
        return (
            f"{r[f'{p}_img_s']:{width}.1f} {r[f'{p}_img_per_cpu_s']:9.1f} "
            f"{r[f'{p}_gflops_per_cpu_s']:8.1f} {100 * pk if pk else float('nan'):4.0f} "
            f"{r[f'{p}_cores_busy']:5.2f}"
        )

    ratio = r.get("ratio_tf_over_torch")
    tail = f"{ratio:7.2f}x {r['ratio_tf_over_torch_cpu']:5.2f}x" if ratio is not None else " " * 15
    return (
        f"{r['model']:5s} {r['size']:4d} {r['depth']:1d} "
        f"{r['variant'] + _SHORT.get(r.get('precision', 'float32'), ''):11s} "
        f"{'on' if r['jit'] else 'off':3s} {r['feed']:8s}|{side('tf', 8)}|{side('torch', 11)}|"
        f"{tail} {r['max_other_load_cores']:5.2f}"
    )


# --------------------------------------------------------------------------- main


def _write_json(path, env, peaks, results) -> None:
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(
        json.dumps(
            {"env": env, "peaks": peaks, "results": results, "argv": sys.argv[1:]}, indent=1
        ),
        encoding="utf-8",
    )
    print(f"wrote {path}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="aesc", help="comma list of ae, aesc, unet")
    p.add_argument("--sizes", default="128", help="comma list of image sides")
    p.add_argument("--depth", type=int, default=None, help="override the depth (all models)")
    p.add_argument("--variants", default="baseline", help="comma list, e.g. baseline,up,up+fbn")
    p.add_argument("--jit", default="off", help="comma list of off, on")
    p.add_argument(
        "--precision",
        default="float32",
        help="comma list of float32, mixed_bfloat16, mixed_float16 (Keras dtype policies)",
    )
    p.add_argument(
        "--interleave",
        action="store_true",
        help="time the --jit x --precision configurations in alternation (cached batch)",
    )
    p.add_argument(
        "--compare-precision",
        action="store_true",
        help="time ks.train in each --precision, repetitions interleaved (no PyTorch)",
    )
    p.add_argument(
        "--train-recipe",
        default="default",
        choices=["default", "bare"],
        help="--compare-precision: ks.train's defaults, or no metrics/validation/run folder",
    )
    p.add_argument(
        "--epochs-per-rep",
        type=int,
        default=2,
        help="--compare-precision: timed epochs per repetition (after --warmup epochs)",
    )
    p.add_argument(
        "--suite",
        action="store_true",
        help="AE/AESc/U-Net x --sizes x --precision x (Keras fit, ks.train, PyTorch), "
        "interleaved; writes --json and --md",
    )
    p.add_argument("--md", default=None, help="--suite: write the Markdown table here")
    p.add_argument(
        "--head-variants",
        default=None,
        help="time aesc_head variants against the AESc step, e.g. baseline,head_scale2,frozen",
    )
    p.add_argument("--feeds", default="cached", help="comma list of cached, pipeline, train")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="steps per timed epoch")
    p.add_argument("--warmup", type=int, default=1, help="warm-up epochs of --steps steps")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument(
        "--tf-inter-op",
        type=int,
        default=None,
        help="TF inter-op threads (default: --threads, like PyTorch's interop threads)",
    )
    p.add_argument(
        "--onednn",
        default="default",
        choices=["default", "0", "1"],
        help="set TF_ENABLE_ONEDNN_OPTS before importing TensorFlow (default: leave it)",
    )
    p.add_argument("--torch", default="auto", choices=["auto", "off"])
    p.add_argument("--no-peaks", action="store_true")
    p.add_argument("--peaks-json", default=None, help="reuse the peaks of an earlier --json")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each row, wait up to this many s for other processes to go quiet",
    )
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--profile", default=None, help="profile instead of benchmarking; write here")
    p.add_argument("--profile-steps", type=int, default=3)
    args = p.parse_args(argv)
    if args.suite:
        given = set(sys.argv[1:] if argv is None else argv)
        if "--models" not in given:
            args.models = "ae,aesc,unet"
        if "--sizes" not in given:
            args.sizes = "128,256"
        if "--precision" not in given:
            args.precision = "float32,mixed_bfloat16"

    import importlib.util

    if args.onednn != "default":
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = args.onednn
    tf = setup_tf(args.threads, args.tf_inter_op)
    worker = None
    use_torch = (
        args.torch != "off"
        and args.profile is None
        and not args.interleave
        and not args.compare_precision
        and not args.head_variants
    )
    if use_torch and importlib.util.find_spec("torch"):
        worker = TorchWorker(args.threads)
    import keras
    import numpy as np

    import keras_skipae as ks

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    jits = [j.strip() == "on" for j in args.jit.split(",")]
    precisions = [v.strip() for v in args.precision.split(",") if v.strip()]
    bad = set(precisions) - set(_SHORT)
    if bad:
        raise SystemExit(f"unknown --precision {sorted(bad)}; choose from {sorted(_SHORT)}")
    feeds = [f.strip() for f in args.feeds.split(",")]

    from keras_skipae.training import resolve_precision

    env = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {cpu_flags()}",
        "cpu": cpu_info(),
        "auto_precision": resolve_precision("auto"),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "torch": worker.info["torch"] if worker is not None else None,
        "threads": {
            "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "torch_num_threads": worker.info["num_threads"] if worker is not None else None,
            "torch_interop_threads": worker.info["interop_threads"] if worker is not None else None,
        },
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "onednn_active": onednn_active(),
        "batch": BATCH,
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup_epochs": args.warmup,
        "precisions": precisions,
        "interleave": args.interleave,
    }
    print(f"machine: {env['machine']}")
    print(
        f"TF {env['tensorflow']}, Keras {env['keras']}, torch {env['torch']}, Python "
        f"{env['python']}; threads {env['threads']}; TF_ENABLE_ONEDNN_OPTS={env['onednn_opts']} "
        f"(oneDNN ops {'ON' if env['onednn_active'] else 'OFF'})"
    )
    print(
        f"batch {BATCH}, {'/'.join(precisions)}, Adam({LR}), MSE; {args.repeats} timed epochs x {args.steps} "
        f"steps after {args.warmup} warm-up epoch(s); medians",
        flush=True,
    )
    rng = np.random.default_rng(0)
    results = []
    peaks = {}
    if args.peaks_json:
        peaks = json.loads(Path(args.peaks_json).read_text(encoding="utf-8"))["peaks"]
        print(f"peaks from {args.peaks_json}")
    elif (
        not args.no_peaks and args.profile is None and not args.compare_precision and not args.suite
    ):
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        peaks = measure_peaks(tf, worker)
        print(
            "peaks (GFLOP/s, best of 3): " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()),
            flush=True,
        )

    if args.head_variants:
        results = run_head_variants(args, tf, keras, ks, sizes, rng)
        _write_json(args.json, env, peaks, results)
        return

    if args.interleave:
        results = run_interleaved(args, tf, keras, models, sizes, jits, precisions, peaks, rng)
        _write_json(args.json, env, peaks, results)
        return

    synth_root = {}
    tmp = tempfile.TemporaryDirectory(prefix="ks_bench_")

    def images_for(size):
        if size not in synth_root:
            synth_root[size] = ks.data.synthetic.make_dataset(
                Path(tmp.name) / f"synth{size}",
                categories=["woven"],
                image_size=size,
                n_train=64,
                n_test_good=0,
                n_test_defect=0,
            )
        return ks.data.mvtec_dataset(synth_root[size], "woven", split="train", image_size=size)

    if args.suite:
        results = run_suite(args, tf, keras, ks, worker, models, sizes, precisions, images_for, rng)
        _write_json(args.json, env, peaks, results)
        if args.md:
            command = "python bench/bench_train.py " + " ".join(
                sys.argv[1:] if argv is None else argv
            )
            Path(args.md).parent.mkdir(parents=True, exist_ok=True)
            Path(args.md).write_text(suite_markdown(env, results, command), encoding="utf-8")
            print(f"wrote {args.md}")
        if worker is not None:
            worker.close()
        tmp.cleanup()
        return

    if args.compare_precision:
        results = run_train_precisions(args, keras, ks, models, sizes, precisions, images_for)
        _write_json(args.json, env, peaks, results)
        tmp.cleanup()
        return

    header = HEADER
    rows = []
    for model_name in models:
        for size in sizes:
            depth = args.depth if args.depth is not None else default_depth(model_name, size)
            shape = (BATCH, size, size, 1)
            x = rng.random(shape, dtype=np.float32)
            y = rng.random(shape, dtype=np.float32)
            keras.utils.set_random_seed(0)
            base = build_keras(model_name, size, depth)
            depth_used = depth if depth is not None else 4
            params = base.count_params()
            flops = keras_conv_flops(base)
            runner = None
            if worker is not None:
                runner = TorchRunner(worker, model_name, size, depth, x, y, base, tmp.name)
                assert runner.params == params, (runner.params, params)
                assert runner.flops == flops, (runner.flops, flops)
                print(
                    f"\n{model_name} {size}x{size} depth {depth_used}: params keras {params:,} == "
                    f"torch {runner.params:,}; forward conv {flops / 1e9:.3f} GFLOP/img (keras "
                    f"== torch); torch channels_last={runner.channels_last}; exact-padding "
                    f"torch peer vs keras, same weights: max|diff| {runner.exact_max_abs_diff:.2e}",
                    flush=True,
                )
            else:
                print(
                    f"\n{model_name} {size}x{size} depth {depth_used}: params {params:,}; "
                    f"forward conv {flops / 1e9:.3f} GFLOP/img",
                    flush=True,
                )
            step_flops = 3 * flops * BATCH
            for variant in variants:
                for jit in jits:
                    for feed in feeds:
                        for precision in precisions:
                            keras.utils.set_random_seed(0)
                            base = build_keras(model_name, size, depth, precision)
                            model = apply_variant(base, variant)
                            check = None
                            if model is not base:
                                check = check_variant(base, model, x, y)
                                exact = precision == "float32" and "out32" not in variant
                                tol = 1e-6 if exact else 2e-2  # bfloat16's resolution
                                ok = check["max_abs_diff_inference"] <= tol
                                print(
                                    f"  check {variant}: {check} {'OK' if ok else 'MISMATCH'}",
                                    flush=True,
                                )
                                if not ok:
                                    raise SystemExit(f"variant {variant} changes the output")
                            spe = steps_per_execution(variant)
                            steps = max(spe, args.steps - args.steps % spe)
                            between = None
                            t_before = len(runner.wall) if runner is not None else 0
                            if runner is not None:
                                between = lambda i, r=runner, s=steps: r.run(s)  # noqa: E731
                            if args.profile is not None:
                                ds = tf.data.Dataset.from_tensors((x, y)).repeat()
                                model.compile(
                                    optimizer=keras.optimizers.Adam(LR), loss="mse", jit_compile=jit
                                )
                                model.fit(
                                    ds, epochs=1, steps_per_epoch=2 + args.profile_steps, verbose=0
                                )
                                profile_steps(
                                    tf,
                                    model,
                                    ds,
                                    args.profile_steps,
                                    Path(args.profile),
                                    f"Profile: {model_name} {size}x{size} depth {depth_used}, variant "
                                    f"{variant}, jit {'on' if jit else 'off'}, batch {BATCH}, cached "
                                    f"batch, TF {tf.__version__}, Keras {keras.__version__}, "
                                    f"threads {args.threads}",
                                )
                                return
                            idle_load = (
                                wait_for_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
                            )
                            timer = make_timer(args.warmup, between)
                            t_start = time.perf_counter()
                            if feed == "train":
                                ks.train(
                                    model,
                                    images_for(size),
                                    epochs=args.warmup + args.repeats,
                                    steps_per_epoch=steps,
                                    batch_size=BATCH,
                                    learning_rate=LR,
                                    loss="mse",
                                    metrics=(),
                                    validation_split=0.0,
                                    reduce_lr=False,
                                    tensorboard=False,
                                    run_dir=None,
                                    jit_compile=jit,
                                    callbacks=[timer],
                                    verbose=0,
                                )
                            else:
                                if feed == "cached":
                                    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
                                elif feed == "pipeline":
                                    ds = ks.data.corrupt(
                                        images_for(size),
                                        ks.data.Stains(),
                                        seed=0,
                                        batch_size=BATCH,
                                        repeat=True,
                                        drop_remainder=True,
                                    )
                                else:
                                    raise SystemExit(f"unknown feed {feed!r}")
                                model.compile(
                                    optimizer=make_optimizer(precision),
                                    loss="mse",
                                    jit_compile=jit,
                                    steps_per_execution=spe,
                                )
                                model.fit(
                                    ds,
                                    epochs=args.warmup + args.repeats,
                                    steps_per_epoch=steps,
                                    callbacks=[timer],
                                    verbose=0,
                                )
                            total = time.perf_counter() - t_start
                            tw = runner.wall[t_before:] if runner is not None else None
                            tc = runner.cpu[t_before:] if runner is not None else None
                            row = {
                                "model": model_name,
                                "size": size,
                                "depth": depth_used,
                                "variant": variant,
                                "jit": jit,
                                "feed": feed,
                                "precision": precision,
                                "steps": steps,
                                "params": params,
                                "forward_conv_gflop_per_img": flops / 1e9,
                                "seconds_total": total,
                                "check": check,
                                "other_load_before": idle_load,
                            }
                            row.update(
                                summarize("tf", timer.wall, timer.cpu, steps, step_flops, peaks)
                            )
                            row["tf_other_load_cores_per_repeat"] = timer.foreign
                            if runner is not None:
                                row.update(summarize("torch", tw, tc, steps, step_flops, peaks))
                                row.update(
                                    torch_other_load_cores_per_repeat=runner.foreign[t_before:],
                                    # paired (interleaved) ratios, TF speed / torch speed
                                    ratio_tf_over_torch=statistics.median(
                                        t / w for w, t in zip(timer.wall, tw)
                                    ),
                                    ratio_tf_over_torch_cpu=statistics.median(
                                        t / w for w, t in zip(timer.cpu, tc)
                                    ),
                                    torch_params=runner.params,
                                    torch_channels_last=runner.channels_last,
                                    torch_exact_max_abs_diff=runner.exact_max_abs_diff,
                                )
                            load = max(
                                timer.foreign + (runner.foreign[t_before:] if runner else [])
                            )
                            row["max_other_load_cores"] = load
                            line = format_row(row)
                            results.append(row)
                            rows.append(line)
                            print(header + "\n" + line, flush=True)
                            keras.backend.clear_session()
    print("\nsummary:\n" + header + "\n" + "\n".join(rows))
    _write_json(args.json, env, peaks, results)
    if worker is not None:
        worker.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
