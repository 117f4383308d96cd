"""The reference's config.yml as an asm-tf run configuration (gin), network chosen as the reference chooses it.

The reference picks the score network from `model.unet` and `data.dataset` (`runners/abc_runner.get_model`):
the UNet when `unet` is set (channel multipliers (1, 2, 2, 2) for CIFAR10 and CELEBA, (1, 2, 2, 2, 4, 4) for the
others, always 3 channels), else NCSNv2Deepest for FFHQ, NCSNv2Deeper for LSUN and NCSNv2 for the rest, all of
width `ngf`. `--no_dilation` is a command-line flag that config.yml does not record, and so is the UNet's
`conditional` (a constructor argument no released configuration sets): both are read off the weights. A
conditional UNet embeds the level index i of sigma_i, asm-tf's `UNet.conditioning = 'index'`.
"""

import dataclasses

from asm_tf.reference.files import ReferenceFileError

UNET_SHALLOW_DATASETS = ("CIFAR10", "CELEBA")
UNET_CH_MULT = {True: (1, 2, 2, 2), False: (1, 2, 2, 2, 4, 4)}  # by shallow
DATA_SOURCES = {"CIFAR10": "cifar10", "CELEBA": "celeba", "LSUN": "lsun", "FFHQ": "ffhq",
                "Stacked_MNIST": "stacked_mnist"}
FIXED_IMAGE_SIZES = {"cifar10": 32, "stacked_mnist": 28}  # sources whose size is not a setting


@dataclasses.dataclass(frozen=True)
class ReferenceNetwork:
    """The score network of a reference run: asm-tf's class name and its gin arguments."""

    family: str  # "UNet", "NCSNv2", "NCSNv2Deeper" or "NCSNv2Deepest"
    arguments: dict

    def describe(self):
        return f"{self.family}({', '.join(f'{k}={v!r}' for k, v in self.arguments.items())})"


def _field(config, section, name):
    try:
        return config[section][name]
    except KeyError:
        raise ReferenceFileError(f"config.yml has no {section}.{name}: is it the config.yml of a reference run?"
                                 ) from None


def _check_supported(config):
    model = config["model"]
    if model.get("spec_norm"):
        raise ReferenceFileError("model.spec_norm is true: the importer does not map spectrally normalised "
                                 "NCSNv2 weights (no released configuration uses them)")
    if not model.get("unet"):
        if model.get("normalization", "InstanceNorm++") != "InstanceNorm++":
            raise ReferenceFileError(f"model.normalization is {model['normalization']!r}: asm-tf's NCSNv2 has "
                                     "InstanceNorm++ only, as every released configuration")
        if model.get("nonlinearity", "elu") != "elu":
            raise ReferenceFileError(f"model.nonlinearity is {model['nonlinearity']!r}: asm-tf's NCSNv2 uses ELU, "
                                     "as every released configuration")
    if config["data"].get("dataset") not in DATA_SOURCES:
        raise ReferenceFileError(f"data.dataset {config['data'].get('dataset')!r} is none of the reference's "
                                 f"{sorted(DATA_SOURCES)}")


def reference_network(config, no_dilation=False, conditional=False):
    """asm-tf's counterpart of the network that the reference builds from `config` (a UNet `conditional` on the
    level index)."""
    _check_supported(config)
    ngf = int(_field(config, "model", "ngf"))
    if config["model"].get("unet"):
        shallow = config["data"]["dataset"] in UNET_SHALLOW_DATASETS
        return ReferenceNetwork("UNet", {"ch": ngf, "ch_mult": UNET_CH_MULT[shallow], "num_res_blocks": 2,
                                         "attn_levels": (1,), "dropout": float(config["model"].get("dropout", 0.0)),
                                         **({"conditioning": "index"} if conditional else {})})
    family = {"FFHQ": "NCSNv2Deepest", "LSUN": "NCSNv2Deeper"}.get(config["data"]["dataset"], "NCSNv2")
    return ReferenceNetwork(family, {"ngf": ngf, **({"dilation": False} if no_dilation else {})})


def example_shape(config):
    """The shape of one input of the reference network: the reference's UNet always takes 3 channels."""
    size = int(_field(config, "data", "image_size"))
    channels = 3 if config["model"].get("unet") else int(_field(config, "data", "channels"))
    return (size, size, channels)


def _value(value):
    return repr(tuple(value) if isinstance(value, list) else value)


def _data_lines(config):
    data = config["data"]
    source = DATA_SOURCES[data["dataset"]]
    size = int(data["image_size"])
    lines = [f"Experiment.data = @{source}()"]
    if source in FIXED_IMAGE_SIZES:
        if size != FIXED_IMAGE_SIZES[source]:
            raise ReferenceFileError(f"data.image_size {size}: asm-tf's {source} source has "
                                     f"{FIXED_IMAGE_SIZES[source]}x{FIXED_IMAGE_SIZES[source]} images only")
    else:
        lines.append(f"{source}.image_size = {size}")
    if source == "lsun":
        lines.append(f"lsun.category = {data.get('category', 'church_outdoor')!r}")
    if "random_flip" in data:
        lines.append(f"{source}.random_flip = {bool(data['random_flip'])}")
    transform = []
    if data.get("rescaled"):
        transform.append("Transform.rescale = True")
    if data.get("logit_transform"):
        transform.append("Transform.logit = True")
    if data.get("uniform_dequantization"):
        transform.append("Transform.dequantization = 'uniform'")
    elif data.get("gaussian_dequantization"):
        transform.append("Transform.dequantization = 'gaussian'")
    if transform:
        lines += [f"{source}.transform = @Transform()", *transform]
    return lines


def _training_lines(config):
    training, optim = config.get("training", {}), config.get("optim", {})
    lines = [f"Trainer.{name} = {int(training[key])}" for name, key in
             (("batch_size", "batch_size"), ("num_steps", "n_iters"), ("checkpoint_every", "snapshot_freq"))
             if key in training]
    if optim.get("optimizer", "Adam") == "Adam":
        lines += [f"adam.{name} = {float(optim[key])!r}" for name, key in
                  (("learning_rate", "lr"), ("beta_1", "beta1"), ("beta_2", "beta2"), ("epsilon", "eps"))
                  if key in optim]
    return lines


def _sampler_lines(config):
    sampling = config.get("sampling", {})
    lines = []
    if "consistent" in sampling:
        lines.append(f"SamplerSettings.sampler = {'cas' if sampling['consistent'] else 'als'!r}")
    if sampling.get("nsigma"):
        lines.append(f"SamplerSettings.n_sigma = {int(sampling['nsigma'])}")
    if sampling.get("step_lr"):
        lines.append(f"SamplerSettings.step_size = {float(sampling['step_lr'])!r}")
    if "noise_first" in sampling:  # the reference's --consistent also sets it to False; CAS ignores it
        lines.append(f"SamplerSettings.noise_first = {bool(sampling['noise_first'])}")
    return lines


def gin_text(config, network, source):
    """The run configuration of the reference run `config` (dict of config.yml) with `network`; `source` names
    the imported files in the header comment."""
    model = config["model"]
    lines = [f"# Imported by asm-import from {source}.",
             "# The reference samples from the EMA weights with these settings and denoises the last step.",
             *_data_lines(config),
             f"Experiment.score_network = @{network.family}",
             *(f"{network.family}.{name} = {_value(value)}" for name, value in network.arguments.items()),
             f"Experiment.ema_rate = {float(model.get('ema_rate', 0.999))!r}",
             "",
             f"NoiseSchedule.sigma_begin = {float(_field(config, 'model', 'sigma_begin'))!r}",
             f"NoiseSchedule.sigma_end = {float(_field(config, 'model', 'sigma_end'))!r}",
             f"NoiseSchedule.num_levels = {int(_field(config, 'model', 'num_classes'))}",
             f"NoiseSchedule.spacing = {model.get('sigma_dist', 'geometric')!r}",
             "",
             *_training_lines(config),
             "",
             *_sampler_lines(config)]
    return "\n".join(lines) + "\n"
