"""Reading the reference's files without executing them: a checkpoint (a pickle) through torch's weights-only
unpickler, and config.yml (written by `yaml.dump` of an argparse.Namespace) through a YAML loader that builds
only the Namespace tag, as plain mappings."""

import collections
import os

HOW_TO_INSTALL = 'pip install -e ".[import]" (torch, CPU build, and PyYAML)'
NAMESPACE_TAG = "tag:yaml.org,2002:python/object:argparse.Namespace"


class ReferenceFileError(ValueError):
    """A reference checkpoint or config.yml that cannot be read, or that is not what the reference writes."""


def _require(module):
    try:
        return __import__(module)
    except ImportError:
        raise ReferenceFileError(f"reading the reference's files needs {module}: {HOW_TO_INSTALL}") from None


def _config_loader():
    yaml = _require("yaml")

    class NamespaceLoader(yaml.SafeLoader):
        """YAML's safe types, and the reference's `!!python/object:argparse.Namespace` as a mapping."""

    def namespace(loader, node):
        return loader.construct_mapping(node, deep=True)

    def refuse(loader, suffix, node):
        raise ReferenceFileError(f"refusing the Python tag !!python/{suffix} at line {node.start_mark.line + 1}: "
                                 "only argparse.Namespace is read, nothing is executed")

    NamespaceLoader.add_constructor(NAMESPACE_TAG, namespace)
    NamespaceLoader.add_multi_constructor("tag:yaml.org,2002:python/", refuse)
    NamespaceLoader.add_multi_constructor("!", lambda loader, suffix, node: refuse(loader, "!" + suffix, node))
    return NamespaceLoader, yaml.YAMLError


def load_config(path):
    """The reference's config.yml as nested dicts (sections data, model, sampling, training, optim, ...)."""
    loader, yaml_error = _config_loader()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"reference config {path} not found: the reference's training writes config.yml "
                                "beside its checkpoints; give its path with --reference_config")
    try:
        with open(path, encoding="utf-8") as f:
            config = __import__("yaml").load(f, Loader=loader)
    except ReferenceFileError as error:
        raise ReferenceFileError(f"{path}: {error}") from None
    except (yaml_error, UnicodeDecodeError) as error:
        raise ReferenceFileError(f"{path} is not a YAML file: {str(error).splitlines()[0]}") from None
    if not isinstance(config, dict) or not all(isinstance(config.get(s), dict) for s in ("data", "model")):
        raise ReferenceFileError(f"{path} is not a config.yml of the reference (no data and model sections)")
    return config


Checkpoint = collections.namedtuple("Checkpoint", "weights optimizer epoch step ema_weights")
Checkpoint.__doc__ = """A reference checkpoint: state dicts as {name: float32 numpy array} (DataParallel's `module.`
prefix removed), the optimizer's state dict, the epoch, the step, and the EMA shadow (None without EMA)."""


def _arrays(state, what, path):
    if not isinstance(state, dict) or not state:
        raise ReferenceFileError(f"{path}: the {what} is not a state dict of tensors")
    torch = _require("torch")
    arrays = {}
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise ReferenceFileError(f"{path}: the {what} holds {name!r}, which is not a named tensor")
        if not tensor.is_floating_point():
            raise ReferenceFileError(f"{path}: {what} tensor {name} is {tensor.dtype}, not floating point")
        arrays[name.removeprefix("module.")] = tensor.detach().to(torch.float32).numpy()
    return arrays


def load_checkpoint(path):
    """The reference's checkpoint_<step>.pth, `torch.save([score.state_dict(), optimizer.state_dict(), epoch,
    step, ema_helper.state_dict()])`, read with torch.load(weights_only=True): a pickle that would build any
    other object is refused before anything runs."""
    torch = _require("torch")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"reference checkpoint {path} not found")
    try:
        states = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, zip errors ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "Weights only load failed" in reason or "Unsupported global" in str(error):
            reason = "it asks to build Python objects other than tensors, which are refused (nothing was run)"
        raise ReferenceFileError(f"cannot read {path} as a reference checkpoint: {reason}") from None
    if not isinstance(states, (list, tuple)) or len(states) < 5:
        raise ReferenceFileError(f"{path} is not a reference checkpoint: expected the list [score state, optimizer "
                                 "state, epoch, step, EMA state] that the reference's training saves")
    weights = _arrays(states[0], "score network's state", path)
    ema = None if states[4] is None else _arrays(states[4], "EMA state", path)
    step = states[3]
    if not isinstance(step, int):
        raise ReferenceFileError(f"{path}: the step (entry 3) is {step!r}, not an integer")
    return Checkpoint(weights, states[1], states[2], step, ema)
