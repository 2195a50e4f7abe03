"""``python -m keras_skipae`` runs the command line (``keras_skipae_cli``).

``keras-skipae`` and ``python -m keras_skipae_cli`` answer ``--help`` without TensorFlow;
``python -m keras_skipae`` imports the package (and TensorFlow) first.
"""

from keras_skipae_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
