"""The built-in search spaces (`--space quickstart`, `seed_grid`, `asha_wide`,
`keras_io_mixup`): YAML package data.

They live inside the package, read with `importlib.resources` (`tune_mnist.space.builtin_spaces`),
so one layout serves every way of running: a wheel carries them as package data (pyproject.toml),
an editable install and a plain source checkout find them next to this file, and so does a copy of
`run.py` started as a script by `ray submit`. The checkout's top-level `search_spaces/` is a symlink
to this folder, the place users look and the paths older commands used; the reverse (files in
`search_spaces/`, mapped into the package at build time) would leave a plain checkout without them.
A regular package rather than a plain folder: `importlib.resources.files` needs one on Python
3.10-3.11, and it is still found when a synced checkout named `tune_mnist` next to the script turns
the top-level name into a namespace package (the editable finder resolves the submodule).
"""
