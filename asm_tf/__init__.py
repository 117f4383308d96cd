"""asm-tf: adversarial score matching and consistent annealed sampling (Jolicoeur-Martineau et al., ICLR 2021)."""

import importlib.abc
import os
import re
import sys
import tempfile

# TensorFlow 2.21's CPU wheel leaves its oneDNN kernels off unless asked; they make the score networks'
# convolutions about 1.7x faster on x86 CPUs. This takes effect when asm_tf is imported before TensorFlow
# (as the command-line tools do); export TF_ENABLE_ONEDNN_OPTS=0 to keep them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines (set 0 to see them)

__version__ = "0.1.0"

# Modules that moved into subpackages (docs/layout.md): importing one by its old name says where it went.
MOVED_MODULES = {
    "levels": "asm_tf.noise_levels.formulas", "sigmas": "asm_tf.noise_levels.schedule",
    "schedule_design": "asm_tf.noise_levels.design", "ode": "asm_tf.sampling.ode", "losses": "asm_tf.training.dsm",
    "point_mass": "asm_tf.evaluation.point_mass",
    **{name: f"asm_tf.training.{name}" for name in ("adversarial", "checkpointing", "distribution", "ema",
                                                    "gan_losses", "optimizers", "precision", "preemption",
                                                    "previews")},
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Consulted after the regular finders, so only for a name that no longer exists."""

    def find_spec(self, fullname, path, target=None):
        package, _, name = fullname.rpartition(".")
        if package == __name__ and name in MOVED_MODULES:
            raise ModuleNotFoundError(f"{fullname} has moved: import {MOVED_MODULES[name]} (docs/layout.md)")
        return None


sys.meta_path.append(_MovedModuleFinder())

# What TensorFlow's C++ libraries print while loading, before their logging honours TF_CPP_MIN_LOG_LEVEL:
# absl's banner and INFO lines such as the oneDNN notice (once per library, so twice), and the universal wheel's
# error line when it looks for a GPU on a machine without NVIDIA's driver (nothing is wrong: it runs on the CPU).
_START_UP_INFO = re.compile(rb"WARNING: All log messages before absl::InitializeLog\(\)|I\d{4} "
                            rb"|E\d{4} .*failed call to cuInit: .*(UNKNOWN ERROR \(303\)|CUDA_ERROR_NO_DEVICE)")


def import_tensorflow_quietly():
    """Imports TensorFlow and lists its devices, dropping the INFO lines its start-up prints whatever
    TF_CPP_MIN_LOG_LEVEL says (unless that is 0) and the no-NVIDIA-driver line of a CPU machine; other warnings,
    errors and anything else on stderr are passed on."""
    try:
        saved = None if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" else os.dup(2)
    except OSError:  # no stderr to filter
        saved = None
    if saved is None:
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F811
            tensorflow.config.list_physical_devices()  # looks for GPUs now, while the start-up lines are filtered
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not _START_UP_INFO.match(line)]
            os.write(2, b"".join(kept))
