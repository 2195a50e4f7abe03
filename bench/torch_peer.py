"""PyTorch peers of ``ks.build_ae``, ``ks.build_aesc`` and ``ks.build_unet`` (bench only).

The same layers, channel counts, kernels, strides, normalisation and activations as
the Keras builders with their default arguments (only ``input_shape`` and ``depth``
vary), so that a training-speed comparison compares frameworks, not models:

* AE / AESc (``keras_skipae/models/autoencoder.py``, style ``"aesc"``): ``depth - 1``
  encoder stages ``Conv2d(5x5, stride 2, no bias) -> BatchNorm -> LeakyReLU(0.3)``
  with ``16 * 2**i`` channels, the same stage as bottleneck, a nearest-neighbour 2x
  upsampling, then per level ``Conv2d(5x5) -> BN -> LeakyReLU`` (+ the encoder
  feature of that level for the AESc; a 1x1 projection when channels differ, which
  never happens with the defaults) and a 2x upsampling; output ``Conv2d(5x5, bias)``
  to the input's channels with a sigmoid.
* U-Net (style ``"unet"``): per level two ``Conv2d(3x3, no bias) -> BN -> ReLU``,
  ``MaxPool2d(2)``, ``Dropout(0.1)``; the bottleneck block and ``Dropout(0.1)``;
  per level ``ConvTranspose2d(3x3, stride 2, bias)``, ``cat([up, skip])``,
  ``Dropout(0.1)``, the double block; a 1x1 output convolution with a sigmoid.
* BatchNorm: ``eps=1e-3`` and ``momentum=0.01`` (PyTorch's momentum is Keras'
  ``1 - momentum``; Keras' default is 0.99). LeakyReLU slope 0.3 (Keras 3's
  ``keras.layers.LeakyReLU`` default ``negative_slope``).

Padding. TensorFlow's ``"same"`` pads asymmetrically when the total padding is odd:
a 5x5 stride-2 convolution of an even-sized input pads 1 on top/left and 2 on
bottom/right; a 3x3 stride-2 ``Conv2DTranspose`` crops its full output at the
bottom/right. With ``exact=True`` the peer reproduces that (``F.pad`` before an
unpadded convolution, a crop after an unpadded transposed convolution) and, with
:func:`load_keras_weights`, gives the Keras model's outputs to float precision
(checked by ``bench_train.py``). With ``exact=False`` (the timed default, what a
PyTorch user writes) the convolutions use PyTorch's symmetric ``padding=2`` /
``padding=1, output_padding=1``: the same output sizes, parameter count and
convolution FLOPs, the sampling grid shifted by one pixel.

:func:`param_count` counts like Keras' ``count_params()``: trainable parameters plus
the BatchNorm running mean and variance (Keras' non-trainable moving statistics),
not ``num_batches_tracked``.

Needs ``torch`` (``pip install -e ".[bench]"``); nothing in the package imports it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_DEPTH = {"ae": 6, "aesc": 6, "unet": 4}
LEAKY_SLOPE = 0.3  # keras.layers.LeakyReLU() default negative_slope (Keras 3)
BN_EPS = 1e-3  # keras.layers.BatchNormalization default epsilon
BN_MOMENTUM = 1.0 - 0.99  # Keras momentum 0.99 (the builders' default bn_momentum)


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras' ``padding="same"``.

    ``exact=False``: PyTorch's symmetric ``padding=kernel // 2`` (same output size).
    ``exact=True``: TensorFlow's asymmetric SAME padding via ``F.pad``.
    """

    def __init__(self, cin, cout, kernel, stride=1, bias=True, exact=False):
        super().__init__(
            cin, cout, kernel, stride=stride, padding=0 if exact else kernel // 2, bias=bias
        )
        self.exact = exact

    def forward(self, x):
        if self.exact:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = _same_pads(x.shape[2], k, s)
            left, right = _same_pads(x.shape[3], k, s)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (3x3, stride 2) with Keras' ``padding="same"`` (2x size)."""

    def __init__(self, cin, cout, kernel=3, stride=2, exact=False):
        if exact:
            super().__init__(cin, cout, kernel, stride=stride, padding=0)
        else:
            pad = (kernel - 1) // 2
            super().__init__(
                cin,
                cout,
                kernel,
                stride=stride,
                padding=pad,
                output_padding=stride + 2 * pad - kernel,
            )
        self.exact = exact

    def forward(self, x):
        h, w = x.shape[2] * self.stride[0], x.shape[3] * self.stride[1]
        y = super().forward(x)
        if self.exact:
            # TF's 'same' pads the equivalent forward conv (0 before, 1 after) for
            # k=3, s=2: the output is the full transposed conv cropped at the end.
            y = y[:, :, :h, :w]
        return y


def _bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class EncoderDecoder(nn.Module):
    """The peer of ``keras_skipae.models.autoencoder.build_encoder_decoder``.

    Submodules carry the Keras layer names (``enc0_conv``, ``enc0_bn``, ...), so
    :func:`load_keras_weights` can copy a Keras model's weights by name.
    """

    def __init__(
        self,
        style: str = "aesc",
        skip_mode: str | None = "add",
        input_shape=(256, 256, 1),
        depth: int | None = None,
        filters: int = 16,
        kernel_size: int = 5,
        dropout: float = 0.0,
        exact: bool = False,
    ):
        super().__init__()
        if style not in ("aesc", "unet"):
            raise ValueError(f"style must be 'aesc' or 'unet', got {style!r}")
        self.style, self.skip_mode, self.exact = style, skip_mode, exact
        channels = input_shape[-1]
        if depth is None:
            depth = DEFAULT_DEPTH["unet" if style == "unet" else "aesc"]
        self.depth = depth
        self.n_levels = depth if style == "unet" else depth - 1
        L = self.n_levels
        m = nn.ModuleDict()
        act = (lambda: nn.LeakyReLU(LEAKY_SLOPE)) if style == "aesc" else (lambda: nn.ReLU())
        self.act = act()
        if style == "aesc":
            k = kernel_size
            cin = channels
            for i in range(L):
                c = filters * 2**i
                m[f"enc{i}_conv"] = SameConv2d(cin, c, k, stride=2, bias=False, exact=exact)
                m[f"enc{i}_bn"] = _bn(c)
                cin = c
            c = filters * 2**L
            m["bottleneck_conv"] = SameConv2d(cin, c, k, stride=2, bias=False, exact=exact)
            m["bottleneck_bn"] = _bn(c)
            cin = c
            for i in reversed(range(L)):
                c = filters * 2**i
                m[f"dec{i}_conv"] = SameConv2d(cin, c, k, bias=False, exact=exact)
                m[f"dec{i}_bn"] = _bn(c)
                cin = c if skip_mode != "concat" else 2 * c
            m["out"] = SameConv2d(cin, channels, k, bias=True, exact=exact)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
        else:
            self.drop = nn.Dropout(dropout)
            cin = channels
            for i in range(L):
                c = filters * 2**i
                self._double(m, f"enc{i}", cin, c)
                cin = c
            c = filters * 2**L
            self._double(m, "bottleneck", cin, c)
            cin = c
            for i in reversed(range(L)):
                c = filters * 2**i
                m[f"dec{i}_up"] = SameConvTranspose2d(cin, c, 3, 2, exact=exact)
                merged = 2 * c if skip_mode == "concat" else c
                self._double(m, f"dec{i}", merged, c)
                cin = c
            m["out"] = nn.Conv2d(cin, channels, 1)
            self.pool = nn.MaxPool2d(2)
        self.m = m

    @staticmethod
    def _double(m, name, cin, c):
        for j in (1, 2):
            m[f"{name}_conv{j}"] = SameConv2d(cin if j == 1 else c, c, 3, bias=False)
            m[f"{name}_bn{j}"] = _bn(c)

    def _cba(self, x, name):
        return self.act(self.m[f"{name}_bn"](self.m[f"{name}_conv"](x)))

    def _block(self, x, name):
        for j in (1, 2):
            x = self.act(self.m[f"{name}_bn{j}"](self.m[f"{name}_conv{j}"](x)))
        return x

    def forward(self, x):
        m, feats = self.m, []
        if self.style == "aesc":
            for i in range(self.n_levels):
                x = self._cba(x, f"enc{i}")
                feats.append(x)
            x = self.up(self._cba(x, "bottleneck"))
            for i in reversed(range(self.n_levels)):
                x = self._cba(x, f"dec{i}")
                if self.skip_mode == "add":
                    x = x + feats[i]
                elif self.skip_mode == "concat":
                    x = torch.cat([x, feats[i]], dim=1)
                x = self.up(x)
            return torch.sigmoid(m["out"](x))
        for i in range(self.n_levels):
            x = self._block(x, f"enc{i}")
            feats.append(x)
            x = self.drop(self.pool(x))
        x = self.drop(self._block(x, "bottleneck"))
        for i in reversed(range(self.n_levels)):
            x = m[f"dec{i}_up"](x)
            if self.skip_mode == "concat":
                x = torch.cat([x, feats[i]], dim=1)
            elif self.skip_mode == "add":
                x = x + feats[i]
            x = self._block(self.drop(x), f"dec{i}")
        return torch.sigmoid(m["out"](x))


def build(model: str, input_shape=(256, 256, 1), depth=None, exact=False) -> EncoderDecoder:
    """The peer of ``ks.build_<model>(input_shape=..., depth=...)`` with default arguments."""
    if model == "aesc":
        return EncoderDecoder("aesc", "add", input_shape, depth, exact=exact)
    if model == "ae":
        return EncoderDecoder("aesc", None, input_shape, depth, exact=exact)
    if model == "unet":
        return EncoderDecoder(
            "unet", "concat", input_shape, depth, kernel_size=3, dropout=0.1, exact=exact
        )
    raise ValueError(f"model must be 'ae', 'aesc' or 'unet', got {model!r}")


def param_count(module: nn.Module) -> int:
    """Parameters counted as Keras' ``count_params()``: weights + BN running mean/var."""
    n = sum(p.numel() for p in module.parameters())
    n += sum(
        b.numel() for name, b in module.named_buffers() if not name.endswith("num_batches_tracked")
    )
    return n


def conv_flops(module: nn.Module, input_shape, batch: int = 1) -> int:
    """Forward convolution FLOPs (2 per multiply-add) of one pass, by forward hooks.

    ``Conv2d``: ``2*Kh*Kw*Cin*Cout*Hout*Wout``; ``ConvTranspose2d``:
    ``2*Kh*Kw*Cin*Cout*Hin*Win`` (every input pixel is scattered through the kernel).
    """
    total = [0]

    def hook(mod, inputs, output):
        kh, kw = mod.kernel_size
        cin, cout = mod.in_channels // mod.groups, mod.out_channels
        if isinstance(mod, nn.ConvTranspose2d):
            h, w = inputs[0].shape[2], inputs[0].shape[3]
        else:
            h, w = output.shape[2], output.shape[3]
        total[0] += 2 * kh * kw * cin * cout * h * w * output.shape[0]

    handles = [
        mod.register_forward_hook(hook)
        for mod in module.modules()
        if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d)
    ]
    h, w, c = input_shape
    was_training = module.training
    module.eval()
    with torch.no_grad():
        module(torch.zeros(batch, c, h, w))
    module.train(was_training)
    for hd in handles:
        hd.remove()
    return total[0]


def load_keras_weights(module: EncoderDecoder, weights: dict) -> None:
    """Copies Keras weights into the peer.

    Args:
        module: a peer from :func:`build`.
        weights: ``{keras layer name: [numpy arrays of layer.weights]}``. Conv2D
            kernels ``[kh, kw, cin, cout]`` and Conv2DTranspose kernels
            ``[kh, kw, cout, cin]`` both become PyTorch's ``permute(3, 2, 0, 1)``;
            BatchNormalization ``gamma, beta, moving_mean, moving_variance``.
    """
    with torch.no_grad():
        for name, sub in module.m.items():
            arrays = [torch.as_tensor(a) for a in weights[name]]
            if isinstance(sub, nn.BatchNorm2d):
                for dst, src in zip(
                    (sub.weight, sub.bias, sub.running_mean, sub.running_var), arrays
                ):
                    dst.copy_(src)
            else:
                sub.weight.copy_(arrays[0].permute(3, 2, 0, 1))
                if sub.bias is not None:
                    sub.bias.copy_(arrays[1])


def to_channels_last(module: nn.Module) -> nn.Module:
    return module.to(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- worker
# bench_train.py runs the PyTorch side in a separate process: importing TensorFlow and
# PyTorch into one process made PyTorch's training 5-20x slower here (both bundle
# oneDNN; PyTorch then ran on about one core).


def _peaks(batch=16):
    """Best-of-3 GFLOP/s of a 2048^2 matmul and a 5x5 64->64 conv (per wall s and per CPU s)."""
    import resource
    import time

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def best(fn, reps=3):
        fn()
        bw = bc = float("inf")
        for _ in range(reps):
            t, c = time.perf_counter(), cpu()
            fn()
            bw, bc = min(bw, time.perf_counter() - t), min(bc, max(cpu() - c, 1e-9))
        return bw, bc

    n, k, c, s = 2048, 5, 64, 128
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=gen)
    x = torch.rand(batch, c, s, s, generator=gen).contiguous(memory_format=torch.channels_last)
    w = torch.rand(c, c, k, k, generator=gen).contiguous(memory_format=torch.channels_last)
    out = {}
    with torch.no_grad():
        for key, flops, fn in (
            ("torch_matmul", 2 * n**3, lambda: a @ a),
            ("torch_conv5x5", 2 * k * k * c * c * batch * s * s, lambda: F.conv2d(x, w, padding=2)),
        ):
            bw, bc = best(fn)
            out[f"{key}_gflops"] = flops / bw / 1e9
            out[f"{key}_gflops_per_cpu_s"] = flops / bc / 1e9
    return out


def serve(threads: int) -> None:
    """JSON-lines worker on stdin/stdout for bench_train.py (one model at a time)."""
    import json
    import resource
    import sys
    import time

    import numpy as np

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass
    out = sys.stdout
    sys.stdout = sys.stderr  # keep the protocol channel clean
    state = {}

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    reply(
        {
            "torch": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available()),
        }
    )
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "peaks":
            reply(_peaks())
        elif cmd["cmd"] == "init":
            torch.manual_seed(0)
            data = np.load(cmd["npz"])
            shape = (cmd["size"], cmd["size"], 1)
            nhwc = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)  # noqa: E731
            x = nhwc(data["x"]).contiguous(memory_format=torch.channels_last)
            y = nhwc(data["y"]).contiguous(memory_format=torch.channels_last)
            # Exactness: the exact-padding peer with the Keras weights vs Keras' output.
            exact = build(cmd["model"], shape, cmd["depth"], exact=True)
            weights = {}
            for key in data.files:
                if key.startswith("w/"):
                    _, lname, idx = key.split("/")
                    weights.setdefault(lname, {})[int(idx)] = data[key]
            diff = None
            if weights:
                load_keras_weights(
                    exact, {k: [v[i] for i in sorted(v)] for k, v in weights.items()}
                )
                exact.eval()
                with torch.no_grad():
                    pt = exact(x).permute(0, 2, 3, 1).numpy()
                diff = float(np.max(np.abs(pt - data["keras_out"])))
            net = build(cmd["model"], shape, cmd["depth"], exact=False)
            params, flops = param_count(net), conv_flops(net, shape)
            net = to_channels_last(net).train()
            opt = torch.optim.Adam(net.parameters(), lr=cmd.get("lr", 1e-3))
            w = next(p for p in net.parameters() if p.dim() == 4 and p.shape[1] > 1)
            with torch.no_grad():
                o = net(x)
            cl = bool(
                w.is_contiguous(memory_format=torch.channels_last)
                and o.is_contiguous(memory_format=torch.channels_last)
            )
            state = {"net": net, "opt": opt, "x": x, "y": y}
            for _ in range(int(cmd.get("warmup", 2))):
                _step(state)
            reply(
                {
                    "params": params,
                    "flops": flops,
                    "channels_last": cl,
                    "exact_max_abs_diff": diff,
                }
            )
        elif cmd["cmd"] == "run":
            t0, c0 = time.perf_counter(), cpu()
            state["autocast"] = bool(cmd.get("autocast", False))
            for _ in range(int(cmd["steps"])):
                _step(state)
            reply({"wall": time.perf_counter() - t0, "cpu": cpu() - c0})


def _step(state):
    state["opt"].zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=state.get("autocast", False)):
        out = state["net"](state["x"])
    loss = F.mse_loss(out.float(), state["y"])
    loss.backward()
    state["opt"].step()


if __name__ == "__main__":
    import sys

    serve(int(sys.argv[sys.argv.index("--serve") + 1]) if "--serve" in sys.argv else 1)
