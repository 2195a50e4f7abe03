"""The saving round trip every model and layer test calls (keras-hub's pattern).

``run_model_saving_test`` saves a model to ``.keras``, loads it back with
``safe_mode=True`` after ``import keras_skipae`` only, and checks that nothing
was lost: the same layer names and classes, the same weights, the same outputs.
"""

import keras
import numpy as np

import keras_skipae  # noqa: F401  (registers the package's classes)


def run_model_saving_test(model, inputs, tmp_path, *, atol=1e-6, name="model.keras"):
    """Round-trips ``model`` through ``.keras``; returns the loaded model.

    Args:
        model: a built ``keras.Model``.
        inputs: a batch it accepts.
        tmp_path: a folder to write to.
        atol: the output tolerance.
    """
    path = tmp_path / name
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert [type(a).__name__ for a in loaded.layers] == [type(b).__name__ for b in model.layers]
    assert len(loaded.weights) == len(model.weights)
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    want = keras.ops.convert_to_numpy(model(inputs, training=False))
    got = keras.ops.convert_to_numpy(loaded(inputs, training=False))
    np.testing.assert_allclose(got, want, atol=atol)
    return loaded


def png_declaring(path, width, height):
    """Writes a small PNG file whose header declares ``width`` x ``height`` 8-bit gray
    pixels (one short IDAT chunk: a decompression bomb's header, never decodable)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1024))) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path
