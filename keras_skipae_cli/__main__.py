"""``python -m keras_skipae_cli`` runs the command line (as ``keras-skipae`` does)."""

from keras_skipae_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
