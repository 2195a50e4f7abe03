"""``python -m keras_skipae`` runs the command-line interface."""

from keras_skipae.apps.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
