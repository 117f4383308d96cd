"""Datasets; importing this package registers their gin factories."""

from asm_tf.data import (  # noqa: F401
    digits,
    image_folder,
    stacked_mnist,
    tfds_images,
    toy2d,  # noqa: F401
)
