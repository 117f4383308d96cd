"""Where each tensor of a reference state dict goes in asm-tf's networks, and how it is laid out there.

PyTorch convolutions hold kernels as [out, in, height, width] and asm-tf's as [height, width, in, out]; the UNet's
1x1 "NiN" maps and Linear layers hold [out, in] where asm-tf holds [in, out] (or a [1, 1, in, out] kernel for a
shortcut). Names follow the reference's modules: NCSNv2's `res<k>.<block>`, `refine<k>` and the UNet's
`downblocks.<i>`, `middleblocks.<i>`, `upblocks.<i>` in the order its forward pass visits them, and for a
conditional UNet its embedding MLP `temb_dense.0`, `temb_dense.2` and each ResnetBlock's projection `<block>.dense`.
"""

import dataclasses

from asm_tf.models.layers import ConvMeanPool, UNetSelfAttention
from asm_tf.models.unet import Downsample, ResnetBlock, Upsample
from asm_tf.reference.files import ReferenceFileError

# Tensors of the reference that no forward pass of its unconditional networks reads (a conditional UNet places them).
UNUSED = {"temb_dense.": "the UNet's time-embedding MLP, built but never used by the unconditional UNet"}


@dataclasses.dataclass(frozen=True)
class Placement:
    """A reference tensor `name` that becomes `variable` after `layout` ('conv', 'nin', 'nin_conv' or 'same')."""

    name: str
    variable: object
    layout: str


def _convert(array, layout):
    if layout == "conv":
        return array.transpose(2, 3, 1, 0)
    if layout == "nin":
        return array.T
    if layout == "nin_conv":
        return array.T[None, None]
    return array


def _reference_shape(shape, layout):
    """The reference's shape of a tensor that has `shape` in asm-tf after `layout`."""
    if layout == "conv":
        return [shape[3], shape[2], shape[0], shape[1]]
    if layout == "nin":
        return [shape[1], shape[0]]
    if layout == "nin_conv":
        return [shape[3], shape[2]]
    return list(shape)


def _conv(name, conv):
    return [Placement(f"{name}.weight", conv.kernel, "conv")] + (
        [Placement(f"{name}.bias", conv.bias, "same")] if conv.use_bias else [])


def _instance_norm_plus(name, norm):
    return [Placement(f"{name}.{part}", getattr(norm, part), "same") for part in ("alpha", "gamma", "beta")]


def _group_norm(name, norm):
    return [Placement(f"{name}.weight", norm.gamma, "same"), Placement(f"{name}.bias", norm.beta, "same")]


def _residual_block(name, block):
    placements = _instance_norm_plus(f"{name}.normalize1", block.norm1) + _conv(f"{name}.conv1", block.conv1)
    placements += _instance_norm_plus(f"{name}.normalize2", block.norm2)
    for part, layer in (("conv2", block.conv2), ("shortcut", block.shortcut)):
        if isinstance(layer, ConvMeanPool):
            placements += _conv(f"{name}.{part}.conv", layer.conv)
        elif layer is not None:
            placements += _conv(f"{name}.{part}", layer)
    return placements


def _residual_conv_units(name, units):
    return [placement for u, unit in enumerate(units.convs) for s, conv in enumerate(unit)
            for placement in _conv(f"{name}.{u + 1}_{s + 1}_conv", conv)]


def _refine_block(name, block):
    placements = [p for i, rcu in enumerate(block.adapt) for p in _residual_conv_units(f"{name}.adapt_convs.{i}", rcu)]
    if block.fusion is not None:
        placements += [p for i, conv in enumerate(block.fusion.convs) for p in _conv(f"{name}.msf.convs.{i}", conv)]
    placements += [p for i, conv in enumerate(block.pooling.convs) for p in _conv(f"{name}.crp.convs.{i}", conv)]
    return placements + _residual_conv_units(f"{name}.output_convs", block.output_units)


def _stage_names(count):
    """res<k> / refine<k> of the reference: NCSNv2Deepest inserts res31 / refine31 after the third."""
    names = [str(k) for k in range(1, count + 1)]
    return names if count < 6 else ["1", "2", "3", "31", "4", "5"]


def refinenet_placements(network):
    placements = _conv("begin_conv", network.begin_conv)
    names = _stage_names(len(network.stages))
    for stage, blocks in zip(names, network.stages):
        for index, block in enumerate(blocks):
            placements += _residual_block(f"res{stage}.{index}", block)
    refine_names = ["1", "2", "31", "3", "4", "5"] if len(names) == 6 else names  # deepest block first
    for stage, block in zip(refine_names, network.refine_blocks):
        placements += _refine_block(f"refine{stage}", block)
    return placements + _instance_norm_plus("normalizer", network.end_norm) + _conv("end_conv", network.end_conv)


def _dense(name, layer):
    return [Placement(f"{name}.weight", layer.kernel, "nin"), Placement(f"{name}.bias", layer.bias, "same")]


def _resnet_block(name, block):
    placements = _group_norm(f"{name}.normalize0", block.norm0) + _conv(f"{name}.conv0", block.conv0)
    if block.dense is not None:
        placements += _dense(f"{name}.dense", block.dense)
    placements += _group_norm(f"{name}.normalize1", block.norm1) + _conv(f"{name}.conv1", block.conv1)
    if block.shortcut is not None:
        placements += [Placement(f"{name}.nin.weights", block.shortcut.kernel, "nin_conv"),
                       Placement(f"{name}.nin.bias", block.shortcut.bias, "same")]
    return placements


def _attention(name, attention):
    placements = _group_norm(f"{name}.normalize", attention.norm)
    for part, kernel, bias in zip("QKV", attention.kernels, attention.biases):
        placements += [Placement(f"{name}.{part}.weights", kernel, "nin"),
                       Placement(f"{name}.{part}.bias", bias, "same")]
    return placements + [Placement(f"{name}.OUT.weights", attention.kernels[3], "nin"),
                         Placement(f"{name}.OUT.bias", attention.biases[3], "same")]


def _unet_layer(name, layer):
    if isinstance(layer, ResnetBlock):
        return _resnet_block(name, layer)
    if isinstance(layer, UNetSelfAttention):
        return _attention(name, layer)
    if isinstance(layer, Upsample):
        return _conv(f"{name}.conv", layer)
    if isinstance(layer, Downsample):
        return _conv(name, layer)
    raise TypeError(f"no reference counterpart for {type(layer).__name__}")


def unet_placements(network):
    placements = _conv("downblocks.0", network.conv_in)
    groups = (("downblocks", network.down_steps, 1), ("middleblocks", [network.middle], 0),
              ("upblocks", network.up_steps, 0))
    for module_list, steps, first in groups:
        layers = [layer for step in steps for layer in step]
        for index, layer in enumerate(layers, start=first):
            placements += _unet_layer(f"{module_list}.{index}", layer)
    placements += _group_norm("normalize", network.norm_out) + _conv("out", network.conv_out)
    # temb_dense is Sequential(Linear, Swish, Linear, Swish): its Linear layers are entries 0 and 2
    return placements + [p for index, layer in zip((0, 2), network.embedding_layers)
                         for p in _dense(f"temb_dense.{index}", layer)]


def placements(network):
    """Every weight of `network` (a built asm-tf NCSNv2-family network or UNet) with its reference name."""
    return unet_placements(network) if hasattr(network, "down_steps") else refinenet_placements(network)


def _unused_reason(name):
    return next((reason for prefix, reason in UNUSED.items() if name.startswith(prefix)), None)


def _lookup(state, name):
    """The tensor `name`; a ConvMeanPool of the reference's `adjust_padding` (28x28 inputs without dilation) nests
    its convolution one level deeper (`<block>.conv.1.weight`)."""
    if name in state:
        return name
    padded = name.replace(".conv.weight", ".conv.1.weight").replace(".conv.bias", ".conv.1.bias")
    return padded if padded in state else None


def assign(network, state, description, what):
    """Sets every weight of `network` from the state dict `state` ({name: array}); returns the [(name, reason)]
    of the tensors left out (UNUSED). ReferenceFileError names the first tensor that is missing, that has no
    place, or whose shape does not fit: a checkpoint of another architecture or width than `description`."""
    values, used = [], set()
    for placement in placements(network):
        key = _lookup(state, placement.name)
        if key is None:
            raise ReferenceFileError(f"the {what} has no tensor {placement.name}, which {description} needs: is "
                                     "config.yml the one of this checkpoint?")
        value = _convert(state[key], placement.layout)
        expected = tuple(placement.variable.shape)
        if value.shape != expected:
            raise ReferenceFileError(
                f"{what} tensor {key} has shape {list(state[key].shape)}, but {description} needs "
                f"{_reference_shape(expected, placement.layout)}: a checkpoint of another "
                "width or architecture than config.yml says?")
        values.append((placement.variable, value))
        used.add(key)
    skipped, unplaced = [], []
    for name in state:
        if name not in used:
            reason = _unused_reason(name)
            (skipped if reason else unplaced).append((name, reason))
    if unplaced:
        raise ReferenceFileError(f"{what} tensor {unplaced[0][0]} has no place in {description} "
                                 f"({len(unplaced)} such tensors): a checkpoint of another architecture than "
                                 "config.yml says")
    for variable, value in values:
        variable.assign(value)
    return skipped
