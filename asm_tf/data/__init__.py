"""Datasets; importing this package registers their gin factories."""

from asm_tf.data import toy2d  # noqa: F401
from asm_tf.data import digits, image_folder, stacked_mnist, tfds_images  # noqa: F401
