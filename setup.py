"""Packaging for keras_skipae.

TensorFlow is deliberately *not* a hard requirement: ``tensorflow`` and
``tensorflow-cpu`` are different distributions and a requirement on one does not
accept the other, so pip would install both. Pick exactly one through an extra:

* ``pip install "keras-skipae[cpu]"``  -> tensorflow-cpu (CPU-only machines, CI)
* ``pip install "keras-skipae[gpu]"``  -> tensorflow[and-cuda] (NVIDIA GPUs, Linux)
* ``pip install keras-skipae``         -> bring your own TensorFlow (conda, a
  site build, tensorflow-macos, ...). Importing a model then raises a clear
  ImportError if no TensorFlow is present.
"""

from setuptools import find_packages, setup

TF_RANGE = ">=2.16,<2.22"

# The edge exports' runtimes (and ONNX's converter); each is imported only when used.
LITERT = ["ai-edge-litert>=1.2,<3"]
ONNX = ["onnx>=1.16,<2", "onnxruntime>=1.18,<2", "tf2onnx>=1.16,<2"]
OPENVINO = ["openvino>=2024.4,<2027"]

setup(
    name="keras-skipae",
    version="0.1.0",
    description=(
        "Reconstruction-based visual anomaly detection in Keras 3: AE, AESc and "
        "U-Net with configurable skips, stain corruption, discrepancy analysis."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_skipae", "keras_skipae.*", "keras_skipae_cli"]),
    include_package_data=True,
    install_requires=[
        "keras>=3.3,<4",
        "numpy>=1.26,<3",
        "opencv-python-headless>=4.8,<5",
        "scikit-image>=0.22,<1",
        "scikit-learn>=1.3,<2",
        "matplotlib>=3.7,<4",
        "tqdm>=4.60,<5",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu{TF_RANGE}"],
        "gpu": [f"tensorflow[and-cuda]{TF_RANGE}"],
        "test": [
            "pytest>=7.4",
            "pytest-xdist>=3.5,<4",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6.25",
            "jupytext>=1.15",
        ],
        "notebooks": ["jupyterlab>=4", "jupytext>=1.15", "ipykernel>=6.25"],
        "dev": ["ruff>=0.5"],
        "bench": ["torch>=2.2,<3"],
        # Edge runtimes and converters (docs/export.md#edge-formats); "edge" is all three.
        "litert": LITERT,
        "onnx": ONNX,
        "openvino": OPENVINO,
        "edge": LITERT + ONNX + OPENVINO,
    },
    # The launcher lives outside keras_skipae, whose import loads TensorFlow.
    entry_points={"console_scripts": ["keras-skipae=keras_skipae_cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Keras",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
