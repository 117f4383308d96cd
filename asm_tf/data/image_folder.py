"""Any directory of PNG/JPEG images (searched recursively) as a dataset, and FFHQ.

Images are resized (shorter side) and center-cropped to `image_size`; grayscale and RGBA images are
converted to `channels`. Every file is decoded once when the source is made: an unreadable or corrupt
file is skipped with a warning that names it (or stops everything, with on_error="raise"). Folders whose
images fit in memory at the final size stay there; larger ones are decoded again at each read.
"""

import os
import re

import gin
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from asm_tf.data import images as image_ops
from asm_tf.data import pipeline, tfds_images
from asm_tf.data.source import DataSource, defer_missing_data
from asm_tf.data.transforms import Transform

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
ON_ERROR = ("skip", "raise")
SPLITS = ("all", "train", "test")
FFHQ_TEST_FRACTION = 0.1
FFHQ_SPLIT_SEED = 2019


def list_images(path):
    """Sorted paths of the PNG/JPEG files under `path` (recursive); an error if there are none."""
    if not tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"image folder {path!r} does not exist or is not a directory")
    found = [os.path.join(root, name) for root, _, names in tf.io.gfile.walk(path) for name in names
             if name.lower().endswith(IMAGE_EXTENSIONS)]
    if not found:
        raise FileNotFoundError(f"no PNG or JPEG images ({', '.join(IMAGE_EXTENSIONS)}) under {path!r}")
    return sorted(found)


def select_split(paths, split, test_fraction, split_seed):
    """The "train" or "test" part of `paths` (a fixed seeded permutation), or all of them for "all"."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        return paths
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"split={split!r} needs 0 < test_fraction < 1, got {test_fraction}")
    order = np.random.default_rng(split_seed).permutation(len(paths))
    num_train = int(round((1.0 - test_fraction) * len(paths)))
    chosen = order[:num_train] if split == "train" else order[num_train:]
    return [paths[i] for i in np.sort(chosen)]


def _loader(image_size, channels):
    def load(path):
        return image_ops.resize_and_center_crop(image_ops.decode(tf.io.read_file(path), channels), image_size)
    return load


def _decode_error(path, load):
    try:
        load(tf.constant(path))
    except (tf.errors.OpError, ValueError) as error:
        message = re.sub(r"\{\{function_node [^}]*\}\}", "", str(error).strip().splitlines()[0])
        return re.sub(r"\s*\[Op:.*$", "", message).strip()
    return "unknown error"


def decode_all(paths, *, image_size, channels, keep_pixels, on_error):
    """Decodes every file once: (paths that decoded, their uint8 images [N, S, S, C] or None).

    Files that fail are skipped with a warning naming each one, or raise ValueError if on_error="raise".
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    load = _loader(image_size, channels)
    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64), paths))
    # Without keep_pixels, one pixel per image is kept: enough to make every file decode.
    ds = ds.map(lambda i, path: (i, load(path) if keep_pixels else load(path)[0, 0]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    decoded, pixels = pipeline.collect(ds) or (np.zeros([0], np.int64), None)
    bad = sorted(set(range(len(paths))) - set(decoded.tolist()))
    for index in bad:
        message = f"cannot decode image {paths[index]!r} ({_decode_error(paths[index], load)})"
        if on_error == "raise":
            raise ValueError(message + "; remove or fix it, or set on_error='skip'")
        logging.warning("%s: skipped", message)
    if bad:
        logging.warning("skipped %d unreadable of %d image files", len(bad), len(paths))
    if not len(decoded):
        raise ValueError(f"none of the {len(paths)} image files could be decoded")
    return [paths[i] for i in decoded], (pixels if keep_pixels else None)


@gin.configurable
@defer_missing_data(lambda image_size, channels, **_: (image_size, image_size, channels))
def image_folder(path, image_size=32, channels=3, random_flip=True, transform=None, in_memory=None,
                 on_error="skip", split="all", test_fraction=0.0, split_seed=0, name=None):
    """A DataSource over the images under `path`, image_size x image_size x channels in [0, 1].

    `in_memory`: None keeps the decoded images in memory when they fit (pipeline.MAX_IN_MEMORY_BYTES).
    `split`: "all", or "train" / "test" of a fixed partition (test_fraction, split_seed).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    example_shape = (image_size, image_size, channels)
    paths = select_split(list_images(path), split, test_fraction, split_seed)
    if in_memory is None:
        in_memory = pipeline.fits_in_memory(len(paths), example_shape)
    paths, pixels = decode_all(paths, image_size=image_size, channels=channels, keep_pixels=in_memory,
                               on_error=on_error)
    transform = Transform() if transform is None else transform
    name = name or os.path.basename(os.path.normpath(path))
    if in_memory:
        return pipeline.random_access_source(
            name=name, make_fetch=lambda: pipeline.in_memory_fetch(pixels), example_shape=example_shape,
            num_examples=len(paths), transform=transform, random_flip=random_flip)

    load = _loader(image_size, channels)
    files = tf.constant(paths)

    def make_dataset(batch_size, seed, shard=(0, 1), augment=True):
        return pipeline.per_example_dataset(
            lambda index: load(tf.gather(files, index)), len(paths), batch_size=batch_size, seed=seed,
            shard=shard, transform=transform, random_flip=random_flip, augment=augment)

    return DataSource(name=name, kind="image", example_shape=example_shape, make_dataset=make_dataset,
                      transform=transform, num_examples=len(paths))


def find_prepared_tfds(path):
    """The TFDS version directory (holding dataset_info.json) at `path` or just below it, else None."""
    if tf.io.gfile.exists(os.path.join(path, "dataset_info.json")):
        return path
    below = sorted(os.path.join(path, entry.rstrip("/")) for entry in tf.io.gfile.listdir(path)
                   if tf.io.gfile.exists(os.path.join(path, entry.rstrip("/"), "dataset_info.json")))
    return below[-1] if below else None


@gin.configurable
@defer_missing_data(lambda image_size, **_: (image_size, image_size, 3))
def ffhq(path=None, image_size=256, split="train", data_dir=None, random_flip=True, transform=None,
         in_memory=None, on_error="skip", shuffle_buffer=1000):
    """FFHQ at image_size (256 as in the reference) from an image folder or a prepared TFDS directory.

    `path` defaults to <data_dir>/ffhq. An image folder is split 90/10 into "train" / "test" by a
    permutation seeded with 2019 (as the reference; "all" for everything). A prepared TFDS directory
    (the version folder holding dataset_info.json, or its parent) uses its own split names.
    """
    if path is None:
        if data_dir is None:
            raise FileNotFoundError(
                "FFHQ is not in the TFDS catalog: set ffhq.path to a folder of FFHQ images (e.g. images1024x1024 "
                "from github.com/NVlabs/ffhq-dataset, or a copy resized to 256) or to a prepared TFDS dataset "
                "directory, or set ffhq.data_dir to a directory holding one of these as 'ffhq'")
        path = os.path.join(data_dir, "ffhq")
    if not tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"FFHQ directory {path!r} does not exist: set ffhq.path to a folder of FFHQ images "
                                f"or to a prepared TFDS dataset directory")
    prepared = find_prepared_tfds(path)
    if prepared is None:
        return image_folder(path, image_size=image_size, channels=3, random_flip=random_flip, transform=transform,
                            in_memory=in_memory, on_error=on_error, split=split, test_fraction=FFHQ_TEST_FRACTION,
                            split_seed=FFHQ_SPLIT_SEED, name="ffhq")
    builder = tfds.builder_from_directory(prepared)
    return tfds_images.tfds_image_source(
        builder.name, source_name="ffhq", factory="ffhq", split=split, data_dir=None,
        example_shape=(image_size, image_size, 3),
        preprocess=lambda image: image_ops.resize_and_center_crop(image, image_size),
        in_memory=in_memory, random_flip=random_flip, transform=transform, shuffle_buffer=shuffle_buffer,
        builder=builder)
