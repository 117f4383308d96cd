"""Loading a run's gin configuration in the tools that tune without a trained model (tools/step_size.py,
tools/sigma_max.py)."""

import logging
import os

import gin


def load_gin_config(files=(), bindings=()):
    """Parses a run's gin files and bindings for a tool; configurables the tool has not imported are ignored.

    `include`s are looked up beside each file, as the training command does.
    """
    for path in files:
        if not os.path.exists(path):
            raise ValueError(f"gin file {path} not found")
        gin.add_config_file_search_path(os.path.dirname(os.path.abspath(path)))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)  # gin logs an error for every search path an include is not in
    try:
        gin.parse_config_files_and_bindings(list(files), list(bindings), skip_unknown=True, finalize_config=False)
    finally:
        root.setLevel(level)
