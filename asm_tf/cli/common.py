"""Pieces shared by the command-line tools: one-line errors, --help, seed lists, sampler flags."""

import dataclasses
import sys
import typing

from absl import app, flags, logging

from asm_tf import storage


class UserError(Exception):
    """A mistake in the command line or the configuration, reported as one line without a traceback."""


RUN_BINDINGS_HELP = ("Gin bindings applied on top of the run's saved config.gin (which is not changed), e.g. "
                     "\"image_folder.path = '/new/place'\" for data that moved.")


LEVEL_FLAGS = ("spacing", "rho", "churn", "eta")
SAMPLER_FLAGS = ("sampler", "n_sigma", *LEVEL_FLAGS)


def define_sampler_flags():
    """Flags of the sampler, the levels it visits and the ODE samplers' noise (asm-sample, asm-eval); each
    defaults to the run's (SamplerSettings.override)."""
    from asm_tf import sampling  # the command-line tools that do not sample need no TensorFlow graph code

    flags.DEFINE_enum("sampler", None, list(sampling.SAMPLERS), "Sampler (default: the run's).")
    flags.DEFINE_integer("n_sigma", None, "ALS steps per level, or CAS grid refinement (default: the run's).")
    flags.DEFINE_enum("spacing", None, ["ladder", "rho"], "Levels for --num_steps: 'ladder' sub-samples the trained "
                      "ladder (the default), 'rho' takes EDM's rho schedule between its ends.")
    flags.DEFINE_float("rho", None, "rho of --spacing=rho (default 7).")
    flags.DEFINE_float("churn", None, "EDM's S_churn for euler and heun (default 0): before each of the N steps, the "
                       "final denoising included, sigma rises to sigma (1 + min(S_churn / N, sqrt(2) - 1)), at most "
                       "the first level, with fresh noise.")
    flags.DEFINE_float("eta", None, "DDIM's eta for euler, 0 (deterministic, the default) to 1 (ancestral).")


def define_precision_flag():
    """--precision of the commands that run a trained network (asm-sample, asm-export, asm-eval)."""
    from asm_tf.training.precision import PRECISIONS  # as define_sampler_flags: only these commands import it

    flags.DEFINE_enum("precision", "float32", list(PRECISIONS),
                      "The network's arithmetic: float32 (the default: the same images on every machine) or "
                      "mixed_bfloat16 (its layers in bfloat16 from the same float32 weights; native on CPUs with "
                      "AVX512-BF16 or AMX-BF16 and GPUs of compute capability 8.0+, emulated and slower elsewhere). "
                      "The sampler's state, noise and coefficients stay float32.")


def announce_precision(precision):
    """Prints the network's precision when it is not float32, with a warning where bfloat16 is emulated."""
    if precision == "float32":
        return
    from asm_tf.training import precision as precision_lib

    print(f"precision: {precision} ({precision_lib.bfloat16_line()})", flush=True)
    precision_lib.warn_if_emulated(precision, lambda line: print(line, file=sys.stderr, flush=True))


def settings_from_flags(run, *, num_steps=None, step_size=None):
    """The run's sampler settings with the SAMPLER_FLAGS that were given, `num_steps` and `step_size` (None: the
    run's; "auto": carried to the new settings) applied on top: the one translation of asm-sample's and asm-eval's
    sampler flags."""
    overrides = {name: flags.FLAGS[name].value for name in SAMPLER_FLAGS}
    return run.sampler_settings.override(run.experiment.schedule, num_steps=num_steps, step_size=step_size,
                                         **overrides)


def run_app(program, main):
    """Runs the absl `main` of a console script: --help lists its module's flags (absl lists those of the
    script file, which defines none) and its docstring; errors are one line; absl's and TensorFlow's INFO
    logging stays off unless --verbosity is given."""
    module = sys.modules[main.__module__]
    listed = flags.FLAGS.get_key_flags_for_module(__name__)  # define_sampler_flags defines them here
    if module.__name__ != "__main__":  # run as a console script, not with python -m
        listed += flags.FLAGS.get_key_flags_for_module(module.__name__) + [flags.FLAGS["verbosity"]]
        sys.modules["__main__"].__doc__ = module.__doc__
    for flag in listed:
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
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


def parse_sampler_variant(text, run_settings, schedule):
    """'SAMPLER[:FIELD=VALUE,...]' (fields of sampling.SamplerSettings) -> SamplerSettings: those fields, the run's
    noise_first, and SamplerSettings' defaults for the others (the trained ladder, one step per level, no ODE
    noise), whatever the run's config.gin binds.

    ALS and CAS carry a step size to the variant's levels (sampling.carried_step_size): the variant's step_size,
    read as tuned on the trained ladder with one step per level, or else the run's for that sampler
    (SamplerSettings.with_sampler), read on the run's own levels (its n_sigma or num_steps).
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
    step_size = fields.pop("step_size", None)
    try:
        variant = sampling.SamplerSettings.defaults(sampler=name, noise_first=run_settings.noise_first, **fields)
        if name in sampling.ODE_SAMPLERS:
            return variant
        tuned = (run_settings.with_sampler(name) if step_size is None
                 else sampling.SamplerSettings.defaults(sampler=name, step_size=step_size))
        return dataclasses.replace(variant, step_size=sampling.carried_step_size(tuned, variant, schedule))
    except ValueError as error:
        raise UserError(f"sampler variant {text!r}: {error}") from None
