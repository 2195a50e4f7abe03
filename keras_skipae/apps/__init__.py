"""Applications on top of the library: the CLI, the demo, run-folder workflows, baselines."""
