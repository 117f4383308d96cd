"""Fixtures that tie asm-tf's networks to the paper's: checkpoints written by the reference code and its networks'
outputs, for tests/test_reference_import.py.

    python tools/experiments/reference_fixtures.py --reference_dir=REF --output_dir=tests/fixtures/reference
    python tools/experiments/reference_fixtures.py --reference_dir=REF --output_dir=/tmp/full --cases=cifar10_ncsnv2,cifar10_unet \
        --full_size                                        # the paper's CIFAR-10 networks, checked by hand

REF is an export of the reference repository (AlexiaJM/AdversarialConsistentScoreMatching at commit 9575592, e.g.
`git archive HEAD | tar -x -C REF` of a clone); the script imports its modules (its data loaders' imaging
libraries are replaced by empty modules when absent) and needs torch and PyYAML: `pip install -e ".[import]"`.
Nothing of the reference is copied; only what its code computes is written.

For each case the reference's own code builds the network from one of its config files (with a small `ngf`
unless --full_size), the way its runner does (`runners.abc_runner.get_model`, wrapped in DataParallel, so the
keys carry the `module.` prefix), and every parameter is set off its initial value: kernels to N(0, 1/fan_in),
gains and InstanceNorm++'s alphas to 1 + N(0, 0.1^2), biases and shifts to N(0, 0.1^2), drawn in the state
dict's order from numpy's default_rng(seed). The EMA shadow gets another seed, so that live and EMA weights
differ everywhere. Per case, in OUTPUT_DIR/<case>/:

    config.yml             yaml.dump of the reference's config Namespace, as its main.py writes it
    checkpoint_<step>.pth  torch.save([score.state_dict(), optimizer.state_dict(), epoch, step,
                           ema_helper.state_dict()]), as its training does (cases marked rebuilt: not written)
    expected.npz           inputs x (NHWC, x0 + sigma z at the `sigmas`), the EMA and the live network's outputs
                           (NHWC), the tensor names and shapes in state-dict order, and the two seeds; for a
                           conditional UNet also the `levels`, the indices i on the config's ladder that its
                           forward pass is given (t), whose sigma_i are the `sigmas`

The UNet's smallest width (ngf 32, set by its 32 GroupNorm groups) has 2 million parameters, 16 MB for live
and EMA weights, so its checkpoint is not kept: `rebuild_checkpoint` (used by the tests too) writes the same file
again from expected.npz. The conditional UNet, which no configuration of the reference selects, is the runner's
UNet rebuilt from its recorded constructor arguments (`locals`, as the reference's EMA copies it) with
`conditional=True`.
"""

import argparse
import functools
import os
import sys
import types

import numpy as np

# name: (config file, overrides, use DataParallel's key prefix, take one optimizer step, rebuilt by the tests)
CASES = {
    "cifar10_ncsnv2": ("cifar10_9999ema.yml", {"model": {"ngf": 4}}, True, True, False),
    "stackedmnist_ncsnv2_no_dilation": ("stackedmnist.yml", {"model": {"ngf": 4}}, False, False, False),
    "church_ncsnv2deeper": ("church.yml", {"model": {"ngf": 4}, "data": {"image_size": 32}}, True, False, False),
    "ffhq_ncsnv2deepest": ("ffhq.yml", {"model": {"ngf": 4}, "data": {"image_size": 32}}, True, False, False),
    "cifar10_unet": ("cifar10_unet_9999_1e-4.yml", {"model": {"ngf": 32}}, True, False, True),
    "cifar10_unet_conditional": ("cifar10_unet_9999_1e-4.yml", {"model": {"ngf": 32}}, True, False, True),
}
NO_DILATION = {"stackedmnist_ncsnv2_no_dilation"}  # the reference's --no_dilation (a flag, not in config.yml)
CONDITIONAL = {"cifar10_unet_conditional"}  # UNet(conditional=True), fed the level index
SIGMAS = (0.01, 0.1, 1.0, 10.0)  # one input image per level
STEP, EPOCH = 1000, 3
WEIGHT_SEED, EMA_SEED, INPUT_SEED = 2021, 2022, 7


def fixture_values(names, shapes, seed):
    """The fixture's value of every tensor, in state-dict order: kernels N(0, 1/fan_in), gains 1 + N(0, 0.01),
    biases and shifts N(0, 0.01), all float32."""
    rng = np.random.default_rng(seed)
    values = []
    for name, shape in zip(names, shapes):
        draw = rng.standard_normal(shape).astype(np.float32)
        if len(shape) > 1:
            values.append(draw / np.float32(np.sqrt(np.prod(shape[1:]))))
        elif name.rsplit(".", 1)[-1] in ("weight", "gamma", "alpha"):  # GroupNorm weight, InstanceNorm++ gains
            values.append(1.0 + 0.1 * draw)
        else:
            values.append(0.1 * draw)
    return values


def rebuild_checkpoint(expected, path):
    """Writes the checkpoint of a case from its expected.npz in the reference's format (with an empty optimizer
    state): what the script would have written, for the cases whose checkpoint is too large to keep."""
    import collections

    import torch

    names, shapes = list(expected["names"]), [tuple(s[s >= 0]) for s in expected["shapes"]]

    def state(seed, prefix):
        values = fixture_values(names, shapes, int(seed))
        return collections.OrderedDict((prefix + n, torch.from_numpy(v)) for n, v in zip(names, values))

    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "params": list(range(len(names)))}]}
    torch.save([state(expected["weight_seed"], "module."), optimizer, EPOCH, int(expected["step"]),
                state(expected["ema_seed"], "")], path)


def _stand_in(module, attribute):
    """An empty class for any public name imported from a module that is not installed."""
    if attribute.startswith("_"):
        raise AttributeError(attribute)
    return type(attribute, (), {"__module__": module})


def import_reference(reference_dir):
    """The reference's configs, models and runner modules, without its data loaders' imaging libraries."""
    if not os.path.isdir(os.path.join(reference_dir, "models")):
        raise SystemExit(f"--reference_dir={reference_dir} is not an export of the reference repository")
    sys.path.insert(0, reference_dir)
    for name in ("torchvision", "torchvision.transforms", "torchvision.datasets", "torchvision.utils", "PIL",
                 "PIL.Image", "lmdb", "tensorboardX"):
        try:
            __import__(name)
        except ImportError:  # only its data loading and image saving use them: empty stand-ins for the imports
            module = types.ModuleType(name)
            module.__path__ = []
            module.__getattr__ = functools.partial(_stand_in, name)
            sys.modules[name] = module
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)
    runners = types.ModuleType("runners")  # runners/__init__ imports every runner (TensorFlow's FID among them)
    runners.__path__ = [os.path.join(reference_dir, "runners")]
    sys.modules["runners"] = runners
    import configs
    import models.ema
    import runners.abc_runner
    return types.SimpleNamespace(configs=configs, ema=models.ema, runner=runners.abc_runner)


def merge(base, overrides):
    for key, value in overrides.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


def reference_config(ref, reference_dir, config_file, overrides):
    """The Namespace that the reference's get_config builds from `config_file` over default.yml."""
    import yaml

    def raw(name):
        with open(os.path.join(reference_dir, "configs", name)) as f:
            return yaml.safe_load(f)

    config = ref.configs.dict2namespace(ref.configs.setdefault(merge(raw(config_file), overrides),
                                                               raw("default.yml")))
    config.sampling.sigma_dist = config.model.sigma_dist
    config.biggan.resolution = config.data.image_size
    return config


def conditional_unet(unet):
    """The reference UNet `unet` built again from its constructor arguments with conditional=True."""
    arguments = list(unet.locals)  # [n_channels, deeper, dropout, conditional, ngf, n_sigmas]
    arguments[3] = True
    return type(unet)(*arguments)


def noise_levels(ref, config, name):
    """(sigmas, levels): the SIGMAS, or for a conditional case the levels of the config's ladder nearest to them
    and their indices."""
    if name not in CONDITIONAL:
        return np.array(SIGMAS), None
    ladder = ref.runner.get_sigma(config.model, config.sampling, True)
    levels = np.array([np.abs(np.log(ladder / sigma)).argmin() for sigma in SIGMAS])
    return ladder[levels], levels


def make_case(ref, reference_dir, name, output_dir, full_size):
    import torch
    import yaml

    config_file, overrides, data_parallel, optimizer_step, rebuilt = CASES[name]
    if full_size:
        overrides = {key: {k: v for k, v in value.items() if k not in ("ngf", "image_size")}
                     for key, value in overrides.items()}
    config = reference_config(ref, reference_dir, config_file, overrides)
    args = types.SimpleNamespace(device=torch.device("cpu"), target="gaussian", no_dilation=name in NO_DILATION,
                                 std=False)
    torch.manual_seed(0)
    score = ref.runner.get_model(config.model, config.data, args)
    score = conditional_unet(score) if name in CONDITIONAL else score
    score = torch.nn.DataParallel(score) if data_parallel else score
    inner = score.module if data_parallel else score
    names = [n for n, _ in inner.named_parameters()]
    shapes = [tuple(p.shape) for _, p in inner.named_parameters()]
    with torch.no_grad():
        for parameter, value in zip(inner.parameters(), fixture_values(names, shapes, WEIGHT_SEED)):
            parameter.copy_(torch.from_numpy(value))
    optimizer = ref.runner.get_optimizer(config.optim, score.parameters())
    if optimizer_step:  # Adam moments in the checkpoint, as after training; the weights stay the fixture's
        before = [p.detach().clone() for p in score.parameters()]
        sum(p.sum() for p in score.parameters()).backward()
        optimizer.step()
        with torch.no_grad():
            for parameter, value in zip(score.parameters(), before):
                parameter.copy_(value)
    ema = ref.ema.EMAHelper(mu=config.model.ema_rate)
    ema.register(score)
    ema.load_state_dict({n: torch.from_numpy(v) for n, v in
                         zip(names, fixture_values(names, shapes, EMA_SEED))})

    size, channels = config.data.image_size, 3 if config.model.unet else config.data.channels
    rng = np.random.default_rng(INPUT_SEED)
    x0 = rng.uniform(size=(len(SIGMAS), channels, size, size)).astype(np.float32)
    sigmas, levels = noise_levels(ref, config, name)
    x = x0 + np.reshape(sigmas, (-1, 1, 1, 1)).astype(np.float32) * rng.standard_normal(x0.shape, np.float32)
    inputs = (torch.from_numpy(x),) + (() if levels is None else (torch.from_numpy(levels),))
    with torch.no_grad():
        live = score(*inputs).numpy()
        ema_network = ema.ema_copy(score, torch.device("cpu"))
        ema_output = ema_network(*inputs).numpy()

    directory = os.path.join(output_dir, name)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.yml"), "w") as f:
        yaml.dump(config, f, default_flow_style=False)
    nhwc = (0, 2, 3, 1)
    longest = max(len(s) for s in shapes)
    np.savez(os.path.join(directory, "expected.npz"), x=x.transpose(nhwc), ema_output=ema_output.transpose(nhwc),
             live_output=live.transpose(nhwc), sigmas=sigmas, names=np.array(names),
             shapes=np.array([list(s) + [-1] * (longest - len(s)) for s in shapes]), step=STEP,
             weight_seed=WEIGHT_SEED, ema_seed=EMA_SEED, **({} if levels is None else {"levels": levels}))
    checkpoint = os.path.join(directory, f"checkpoint_{STEP}.pth")
    if rebuilt and not full_size:
        print(f"{name}: {sum(int(np.prod(s)) for s in shapes):,} parameters; checkpoint rebuilt by the tests")
        return
    torch.save([score.state_dict(), optimizer.state_dict(), EPOCH, STEP, ema.state_dict()], checkpoint)
    print(f"{name}: {sum(int(np.prod(s)) for s in shapes):,} parameters, {checkpoint} "
          f"({os.path.getsize(checkpoint) / 1e6:.2f} MB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference_dir", required=True, help="An export of the reference repository.")
    parser.add_argument("--output_dir", required=True, help="Where the cases' directories go.")
    parser.add_argument("--cases", default=",".join(CASES), help=f"Comma-separated, of {', '.join(CASES)}.")
    parser.add_argument("--full_size", action="store_true", help="The configs' own ngf and image size.")
    args = parser.parse_args()
    unknown = sorted(set(args.cases.split(",")) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {sorted(CASES)}")
    ref = import_reference(os.path.abspath(args.reference_dir))
    for name in args.cases.split(","):
        make_case(ref, os.path.abspath(args.reference_dir), name, args.output_dir, args.full_size)


if __name__ == "__main__":
    main()
