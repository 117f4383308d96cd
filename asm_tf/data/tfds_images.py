"""TFDS image datasets with the reference's preprocessing: CIFAR-10, CelebA, LSUN.

Nothing here downloads: a dataset that is not prepared under `data_dir` (default: TFDS's, i.e.
$TFDS_DATA_DIR or ~/tensorflow_datasets) fails at once with the command that prepares it.
Datasets that fit in memory at their final size are decoded once and served by random access;
larger ones stream through a seeded shuffle buffer (see pipeline.py).
"""

import time

import gin
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from asm_tf.data import images as image_ops
from asm_tf.data import pipeline
from asm_tf.data.source import DataSource, defer_missing_data
from asm_tf.data.transforms import Transform

SHUFFLE_BUFFER = 10_000
LSUN_IMAGE_SIZES = {"church_outdoor": 64, "tower": 128}
_HINTS = {
    "celeb_a": "CelebA's Google Drive download often hits its quota; TFDS then asks for the files in "
               "its manual_dir (see the celeb_a page of the TFDS catalog).",
    "lsun": "LSUN is large (church_outdoor about 2.3 GB, tower about 11 GB).",
}


def _data_root(data_dir):
    return data_dir or tfds.core.constants.DATA_DIR


def prepared_builder(name, *, split, data_dir, factory):
    """The TFDS builder of `name`, or FileNotFoundError (at once, no network) saying how to prepare it."""
    builder = tfds.builder(name, data_dir=data_dir)
    try:
        builder.as_dataset(split=split)  # checks that the prepared files exist; reads nothing yet
    except AssertionError as error:
        root = _data_root(data_dir)
        hint = _HINTS.get(name.split("/")[0], "")
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared under {root}. Prepare it once (this downloads it) with\n"
            f"    tfds build {name} --data_dir={root}\n"
            f"or set `{factory}.data_dir` to a directory where it is prepared. {hint}".rstrip()) from error
    return builder


def split_size(builder, split):
    """Examples in `split`, or None when TFDS does not know (e.g. under tfds.testing.mock_data)."""
    try:
        return int(builder.info.splits[split].num_examples) or None
    except (KeyError, ValueError):
        return None


def _encoded_images(builder, split, image_key, **kwargs):
    ds = builder.as_dataset(split=split, decoders={image_key: tfds.decode.SkipDecoding()}, **kwargs)
    return ds.map(lambda example: example[image_key])


def load_in_memory(builder, *, split, image_key, preprocess, channels):
    """All images of `split`, decoded and preprocessed, as uint8 numpy [N, H, W, C]."""
    start = time.time()
    ds = _encoded_images(builder, split, image_key, shuffle_files=False)
    ds = ds.map(lambda data: preprocess(image_ops.decode(data, channels)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    images = pipeline.collect(ds)
    if images is None:
        raise ValueError(f"split {split!r} of TFDS dataset {builder.name!r} holds no examples")
    logging.info("loaded %d images of %s[%s] into memory (%.1f MB) in %.1f s", len(images), builder.name, split,
                 images.nbytes / 1e6, time.time() - start)
    return images


def tfds_image_source(name, *, source_name, factory, split, data_dir, example_shape, preprocess, image_key="image",
                      in_memory, random_flip, transform, shuffle_buffer, builder=None):
    """A DataSource over a TFDS image dataset; `preprocess` maps a uint8 image to `example_shape`."""
    builder = builder or prepared_builder(name, split=split, data_dir=data_dir, factory=factory)
    transform = Transform() if transform is None else transform
    num_examples = split_size(builder, split)
    channels = example_shape[-1]
    if in_memory is None:
        in_memory = pipeline.fits_in_memory(num_examples, example_shape)

    if in_memory:
        def make_fetch():
            return pipeline.in_memory_fetch(load_in_memory(
                builder, split=split, image_key=image_key, preprocess=preprocess, channels=channels))

        return pipeline.random_access_source(
            name=source_name, make_fetch=make_fetch, example_shape=example_shape, num_examples=num_examples,
            transform=transform, random_flip=random_flip)

    def make_dataset(batch_size, seed, shard=(0, 1), augment=True):
        index, count = pipeline.check_batch_and_shard(batch_size, shard)
        records = _encoded_images(
            builder, tfds.even_splits(split, n=count)[index] if count > 1 else split, image_key,
            shuffle_files=True, read_config=tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=True))
        return pipeline.sequential_dataset(
            records, lambda data: preprocess(image_ops.decode(data, channels)), batch_size=batch_size, seed=seed,
            shard=shard, transform=transform, random_flip=random_flip, shuffle_buffer=shuffle_buffer, augment=augment)

    return DataSource(name=source_name, kind="image", example_shape=tuple(example_shape), make_dataset=make_dataset,
                      transform=transform, num_examples=num_examples)


@gin.configurable
@defer_missing_data(lambda **_: (32, 32, 3))
def cifar10(split="train", data_dir=None, random_flip=True, transform=None, in_memory=True,
            shuffle_buffer=SHUFFLE_BUFFER):
    """CIFAR-10 at 32x32x3 (torchvision Resize(32) is the identity), random flips on."""
    return tfds_image_source(
        "cifar10", source_name="cifar10", factory="cifar10", split=split, data_dir=data_dir,
        example_shape=(32, 32, 3), preprocess=lambda image: image_ops.resize_and_center_crop(image, 32),
        in_memory=in_memory, random_flip=random_flip, transform=transform, shuffle_buffer=shuffle_buffer)


@gin.configurable
@defer_missing_data(lambda image_size, **_: (image_size, image_size, 3))
def celeba(split="train", image_size=64, crop_size=140, data_dir=None, random_flip=True, transform=None,
           in_memory=None, shuffle_buffer=SHUFFLE_BUFFER):
    """CelebA (TFDS celeb_a): CenterCrop(140) then Resize(64), random flips.

    `in_memory`: None keeps the decoded images in memory when they fit (MAX_IN_MEMORY_BYTES).
    """
    return tfds_image_source(
        "celeb_a", source_name="celeba", factory="celeba", split=split, data_dir=data_dir,
        example_shape=(image_size, image_size, 3),
        preprocess=lambda image: image_ops.crop_then_resize(image, crop_size, image_size),
        in_memory=in_memory, random_flip=random_flip, transform=transform, shuffle_buffer=shuffle_buffer)


@gin.configurable
@defer_missing_data(lambda category, image_size, **_: (image_size or LSUN_IMAGE_SIZES[category],) * 2 + (3,))
def lsun(category="church_outdoor", image_size=None, split="train", data_dir=None, random_flip=True,
         transform=None, in_memory=None, shuffle_buffer=SHUFFLE_BUFFER):
    """LSUN `category` (TFDS lsun/<category>): Resize(s) then CenterCrop(s), random flips.

    `image_size` defaults to the reference's: 64 for church_outdoor, 128 for tower.
    """
    if image_size is None:
        if category not in LSUN_IMAGE_SIZES:
            raise ValueError(f"no default image_size for LSUN category {category!r}: set lsun.image_size")
        image_size = LSUN_IMAGE_SIZES[category]
    return tfds_image_source(
        f"lsun/{category}", source_name=f"lsun_{category}", factory="lsun", split=split, data_dir=data_dir,
        example_shape=(image_size, image_size, 3),
        preprocess=lambda image: image_ops.resize_and_center_crop(image, image_size),
        in_memory=in_memory, random_flip=random_flip, transform=transform, shuffle_buffer=shuffle_buffer)
