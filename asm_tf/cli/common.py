"""Pieces shared by the command-line tools: gin parsing, one-line errors, seed lists, workdir config."""

import dataclasses
import difflib
import logging as std_logging
import os
import sys
import typing

import gin
import tensorflow as tf
from absl import app, flags, logging

from asm_tf import storage
from asm_tf.experiment import CONFIG_FILE


class UserError(Exception):
    """A mistake in the command line or the configuration, reported as one line without a traceback."""


RUN_BINDINGS_HELP = ("Gin bindings applied on top of the run's saved config.gin (which is not changed), e.g. "
                     "\"image_folder.path = '/new/place'\" for data that moved.")


LEVEL_FLAGS = ("spacing", "rho", "churn", "eta")


def define_level_flags():
    """Flags of the levels a sampler visits and of the ODE samplers' noise (asm-sample, asm-eval)."""
    flags.DEFINE_enum("spacing", None, ["ladder", "rho"], "Levels for --num_steps: 'ladder' sub-samples the trained "
                      "ladder (the default), 'rho' takes EDM's rho schedule between its ends.")
    flags.DEFINE_float("rho", None, "rho of --spacing=rho (default 7).")
    flags.DEFINE_float("churn", None, "EDM's S_churn for euler and heun: noise added before each step (default 0).")
    flags.DEFINE_float("eta", None, "DDIM's eta for euler, 0 (deterministic, the default) to 1 (ancestral).")


def level_overrides():
    """{field: value} of the LEVEL_FLAGS that were given."""
    return {name: flags.FLAGS[name].value for name in LEVEL_FLAGS if flags.FLAGS[name].value is not None}


def run_app(program, main):
    """Runs the absl `main` of a console script: --help lists its module's flags (absl lists those of the
    script file, which defines none) and its docstring; errors are one line; absl's and TensorFlow's INFO
    logging stays off unless --verbosity is given."""
    module = sys.modules[main.__module__]
    if module.__name__ != "__main__":  # run as a console script, not with python -m
        for flag in flags.FLAGS.get_key_flags_for_module(module.__name__) + [flags.FLAGS["verbosity"]]:
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
        sys.modules["__main__"].__doc__ = module.__doc__
    flags.FLAGS["verbosity"].help = ("Logging verbosity: -1 (the default here) shows warnings and errors; 0 adds "
                                     "INFO lines (TensorFlow's strategy and checkpoint messages), 1 debug lines.")
    app.run(main_with_errors(program, main))


def main_with_errors(program, main):
    """Wraps an absl main so that UserError (and file/config errors) exit with one line on stderr: status 2,
    or 1 for a failed write (no space, read-only storage)."""
    def wrapped(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # absl makes it INFO: checkpoint and strategy chatter
        try:
            return main(argv)
        except (UserError, FileNotFoundError, ValueError, storage.StorageError) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"{program}: error: {message}", file=sys.stderr)
            failed_write = isinstance(error, storage.StorageError) and not isinstance(error, storage.WorkdirInUse)
            sys.exit(1 if failed_write else 2)
    return wrapped


def parse_gin(files, bindings):
    """Parses gin files and bindings, turning gin's errors into one-line UserErrors."""
    for path in files:
        if not os.path.exists(path):
            raise UserError(f"gin file {path} not found (give a path such as gin_configs/toy2d_swissroll.gin)")
        gin.add_config_file_search_path(os.path.dirname(os.path.abspath(path)))  # for `include`s beside it
    verbosity, root = logging.get_verbosity(), std_logging.getLogger()
    root_level = root.level
    # gin logs an error for each search path an include is not in: through absl's handler in a command, through
    # Python's root logger in a notebook
    logging.set_verbosity(logging.FATAL)
    root.setLevel(std_logging.CRITICAL)
    try:
        gin.parse_config_files_and_bindings(files, bindings, finalize_config=False)
    except (ValueError, SyntaxError) as error:
        raise UserError(f"bad gin configuration: {_first_line(error)}") from error
    finally:
        logging.set_verbosity(verbosity)
        root.setLevel(root_level)


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def parse_seeds(text):
    """'0-4999', '3,7,11' or '0-9,100-109' -> list of int seeds (ranges include both ends)."""
    seeds = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part[1:]:
                first, last = part.split("-", 1) if not part.startswith("-") else (part, part)
                first, last = int(first), int(last)
                if last < first:
                    raise ValueError
                seeds.extend(range(first, last + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise UserError(f"cannot parse seeds {text!r}: use a range such as 0-4999, a list such as 1,5,9, "
                        "or both such as 0-9,100") from None
    if not seeds:
        raise UserError(f"no seeds in {text!r}")
    return seeds


def check_workdir_config(workdir, config_text, allow_change=False):
    """Refuses to resume a workdir that holds a run of another configuration, unless allowed."""
    path = os.path.join(workdir, CONFIG_FILE)
    if tf.io.gfile.exists(path):
        saved = storage.read_text(path)
        if saved != config_text:
            diff = [line for line in difflib.unified_diff(saved.splitlines(), config_text.splitlines(),
                                                          "saved", "new", lineterm="", n=0)
                    if line[:1] in "+-" and line[:3] not in ("+++", "---")]
            if not allow_change:
                raise UserError(f"{workdir} holds a run of another configuration ({'; '.join(diff)}): "
                                "use a new --workdir, or pass --allow_config_change to resume with the new one")
            print("configuration changed on resume:\n  " + "\n  ".join(diff), flush=True)


def save_config(workdir, config_text):
    """Writes the run's configuration to WORKDIR/config.gin (what asm-sample and resumes read), atomically:
    other workers may be reading it."""
    storage.write_file(os.path.join(workdir, CONFIG_FILE), config_text)


def unused_bindings():
    """The gin bindings ('scope/Name.parameter') that nothing called so far has used: after building a run,
    bindings under a misspelt scope, or of configurables that this tool never calls."""
    used = gin.config._OPERATIVE_CONFIG
    unused = []
    for (scope, selector), parameters in gin.config._CONFIG.items():
        if selector.startswith("gin."):  # macros and constants are used through references
            continue
        for name in parameters:
            if name not in used.get((scope, selector), {}):
                unused.append(f"{scope + '/' if scope else ''}{selector.rsplit('.', 1)[-1]}.{name}")
    return sorted(unused)


def parse_sampler_variant(text, run_settings, schedule):
    """'SAMPLER[:FIELD=VALUE,...]' (fields of sampling.SamplerSettings) -> SamplerSettings on top of the run's.

    An ALS or CAS step size (the variant's step_size, else the run's) is read as tuned on the trained ladder with
    one step per level and carried to the variant's levels with sampling.carried_step_size.
    """
    from asm_tf import sampling  # the command-line tools that do not sample need no TensorFlow graph code

    name, _, rest = text.partition(":")
    types = {field.name: field.type for field in dataclasses.fields(sampling.SamplerSettings)}
    fields = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in types or key == "sampler" or not value:
            raise UserError(f"sampler variant {text!r}: {item!r} is not FIELD=VALUE with a field of "
                            f"{sorted(set(types) - {'sampler'})}")
        kind = (typing.get_args(types[key]) or (types[key],))[0]  # Optional[int] -> int
        kind = (lambda v: v.lower() in ("1", "true")) if kind is bool else kind
        try:
            fields[key] = kind(value)
        except ValueError:
            raise UserError(f"sampler variant {text!r}: {key}={value!r} is not a number") from None
    try:
        base = sampling.SamplerSettings(sampler=name, step_size=fields.pop("step_size", run_settings.step_size),
                                        noise_first=run_settings.noise_first)  # the trained ladder, n_sigma 1
        chosen = dataclasses.replace(base, **fields)
        if name in sampling.ODE_SAMPLERS:
            return chosen
        return dataclasses.replace(chosen, step_size=sampling.carried_step_size(base, chosen, schedule))
    except ValueError as error:
        raise UserError(f"sampler variant {text!r}: {error}") from None
