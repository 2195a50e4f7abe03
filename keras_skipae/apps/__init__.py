"""The programs on top of the library: the CLI's commands, the demo, run-folder workflows, baselines.

Nothing here is part of the public API (``ks.*``): the modules are the command line's
implementation (:mod:`~keras_skipae.apps.cli`, :mod:`~keras_skipae.apps.demo`,
:mod:`~keras_skipae.apps.workflows`, :mod:`~keras_skipae.apps.compare`,
:mod:`~keras_skipae.apps.predict`, :mod:`~keras_skipae.apps.baselines`,
:mod:`~keras_skipae.apps.synth_preview`), imported by their full names.
"""

__all__: list[str] = []
