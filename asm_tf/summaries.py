"""TensorBoard summaries and the pictures shared by training previews and `asm-sample`."""

import io
import math

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure  # drawn without pyplot: the user's matplotlib backend is left alone
from PIL import Image
from tensorboard.plugins.hparams import api as hparams_api

from asm_tf import storage


def image_grid(images, columns=None, padding=0):
    """Tiles images [N, H, W, C] in [0, 1] into one uint8 grid [rows * H, columns * W, C], with `padding`
    pixels of mid grey between tiles."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    step_h, step_w = h + padding, w + padding
    grid = np.full((rows * step_h - padding, columns * step_w - padding, c), 128 if padding else 0, np.uint8)
    for k, image in enumerate(to_uint8(images).numpy()):
        r, col = divmod(k, columns)
        grid[r * step_h:r * step_h + h, col * step_w:col * step_w + w] = image
    return grid


def upscaled(picture, tile_size, min_tile_size=64):
    """A grid of `tile_size`-pixel tiles enlarged by nearest neighbour (each pixel a block) so that a tile is at
    least `min_tile_size` pixels wide on screen: 16x16 digits are a smudge in TensorBoard otherwise."""
    factor = max(1, math.ceil(min_tile_size / tile_size))
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def to_uint8(images):
    """[0, 1] floats to a uint8 tensor exactly as a PNG stores them: round(255 x) after clipping. The one
    quantisation of samples' PNGs and npz, of FID's inputs and of the exported graphs' `images`."""
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


def scatter_plot(points, reference=None, title=None, limit=3.0):
    """A PNG-ready uint8 RGB picture of 2-D points (green) over optional reference points (orange)."""
    fig = Figure(figsize=(4, 4), dpi=80)
    ax = fig.subplots()
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="tab:orange", marker="+", label="real")
    ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:green", marker="+", label="generated")
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", title=title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return np.asarray(Image.open(buffer).convert("RGB"))


def picture(samples, kind, title=None):
    """One uint8 picture of a batch: an image grid, or a scatter plot of 2-D points."""
    return image_grid(samples) if kind == "image" else scatter_plot(samples, title=title)


def screen_picture(samples, kind, title=None, columns=None):
    """`picture` for a screen (TensorBoard): image grids with tiles enlarged to a readable size."""
    if kind != "image":
        return scatter_plot(samples, title=title)
    return upscaled(image_grid(samples, columns), np.shape(samples)[1])


def save_png(array, path):
    """Writes a uint8 [H, W, C] array (C = 1 or 3) as a PNG at a local or remote path."""
    array = np.asarray(array)
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="png")
    storage.write_file(path, buffer.getvalue())


def write_scalars(writer, scalars, step):
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.scalar(name, value)


def write_configuration(writer, operative_config, hyperparameters, step):
    """The run's whole gin configuration as TensorBoard text (tab Text, tag operative_config) and its main
    hyperparameters for the HParams tab, where runs compare side by side."""
    with writer.as_default(step=step):
        tf.summary.text("operative_config", "\n".join("    " + line for line in operative_config.splitlines()))
        hparams_api.hparams(hyperparameters)
    writer.flush()


def write_samples(writer, batches, kind, step, columns=None):
    """One image summary per named batch (e.g. samples, denoised), image tiles enlarged to a readable size."""
    with writer.as_default(step=step):
        for name, samples in batches.items():
            tf.summary.image(name, screen_picture(samples, kind, title=name, columns=columns)[None], step=step)
