"""The one place where gin configuration is registered and parsed, for every command and tool.

Commands parse once at the top (`parse`, or `run_loading.parse_run_config` for a trained run) and then build
their objects from it and hand them down; nothing below reads gin's tables.
"""

import contextlib
import logging as std_logging
import os

import gin
from absl import logging
from gin import config_parser


class ConfigError(ValueError):
    """A gin file that is missing, or a configuration that gin cannot parse."""


def register_configurables():
    """Imports every module that declares gin configurables, so that any run's configuration parses."""
    from asm_tf import data, experiment, models, sampling  # noqa: F401
    from asm_tf.evaluation import fid  # noqa: F401
    from asm_tf.noise_levels import schedule  # noqa: F401
    from asm_tf.training import adversarial, gan_losses, optimizers, trainer  # noqa: F401


@contextlib.contextmanager
def _quiet_includes():
    """Silences gin's error line for each search path an `include` is not in: it logs through absl's handler in
    a command and through Python's root logger in a notebook."""
    verbosity, root = logging.get_verbosity(), std_logging.getLogger()
    root_level = root.level
    logging.set_verbosity(logging.FATAL)
    root.setLevel(std_logging.CRITICAL)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        root.setLevel(root_level)


def parse(files=(), bindings=(), *, text=""):
    """Registers every configurable, clears gin's configuration and parses gin `files` (their `include`s looked
    up beside them), then `text` (a configuration such as a run's saved config.gin), then `bindings` (strings,
    e.g. "Trainer.num_steps = 100"); ConfigError names the first problem in one line."""
    register_configurables()
    gin.clear_config()
    for path in files:
        if not os.path.exists(path):
            raise ConfigError(f"gin file {path} not found (give a path such as gin_configs/toy2d_swissroll.gin)")
        gin.add_config_file_search_path(os.path.dirname(os.path.abspath(path)))
    with _quiet_includes(), _one_line_errors("bad gin configuration"):
        gin.parse_config_files_and_bindings(list(files), text, finalize_config=False)
    with _one_line_errors(f"bad gin binding in {list(bindings)}"):
        gin.parse_config(list(bindings))


@contextlib.contextmanager
def _one_line_errors(prefix):
    """gin's parse errors as ConfigError('PREFIX: the first line of gin's message')."""
    try:
        yield
    except (ValueError, SyntaxError) as error:
        text = str(error).strip()
        raise ConfigError(f"{prefix}: {text.splitlines()[0] if text else type(error).__name__}") from error


def _bound_parameters(config_text):
    """{'scope/Name.parameter'} of the bindings in gin's text of a configuration (macros left out)."""
    statements = config_parser.ConfigParser(config_text, gin.config.ParserDelegate(skip_unknown=True))
    return {f"{statement.scope + '/' if statement.scope else ''}{statement.selector.rsplit('.', 1)[-1]}."
            f"{statement.arg_name}"
            for statement in statements
            if isinstance(statement, config_parser.BindingStatement) and statement.arg_name}


def unused_bindings():
    """The gin bindings ('scope/Name.parameter') that nothing called so far has used: after building a run,
    bindings under a misspelt scope, or of configurables that this command never calls."""
    return sorted(_bound_parameters(gin.config_str()) - _bound_parameters(gin.operative_config_str()))
