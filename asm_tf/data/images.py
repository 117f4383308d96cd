"""Image decoding and geometry in TensorFlow ops: center crops and torchvision-style resizes.

All functions take and return single uint8 images [H, W, C], so that they run inside tf.data maps.
Resizing is bilinear with antialiasing (as PIL does when torchvision resizes), rounded back to uint8.
"""

import tensorflow as tf


def decode(contents, channels):
    """A PNG, JPEG, GIF or BMP byte string as uint8 [H, W, channels]; grayscale and RGBA are converted."""
    image = tf.io.decode_image(contents, channels=channels, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


def center_crop(image, height, width=None):
    """The central height x width window (offsets rounded down); the image must be at least that large."""
    width = height if width is None else width
    shape = tf.shape(image)
    top = (shape[0] - height) // 2
    left = (shape[1] - width) // 2
    with tf.control_dependencies([tf.debugging.assert_greater_equal(
            shape[:2], tf.constant([height, width]), message="image smaller than the crop")]):
        return tf.image.crop_to_bounding_box(image, top, left, height, width)


def resize(image, height, width):
    """Bilinear antialiased resize of a uint8 image to [height, width] (uint8)."""
    resized = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def resize_short_side(image, size):
    """Resizes so that the shorter side is `size`, keeping the aspect ratio (torchvision Resize(size))."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    short = tf.minimum(height, width)
    scale = tf.cast(size, tf.float64) / tf.cast(short, tf.float64)
    new_height = tf.where(height == short, size, tf.cast(tf.cast(height, tf.float64) * scale, tf.int32))
    new_width = tf.where(height == short, tf.cast(tf.cast(width, tf.float64) * scale, tf.int32), size)
    return resize(image, new_height, new_width)


def resize_and_center_crop(image, size):
    """torchvision Resize(size) then CenterCrop(size): a size x size image from any image."""
    return center_crop(resize_short_side(image, size), size)


def crop_then_resize(image, crop, size):
    """torchvision CenterCrop(crop) then Resize(size) (CelebA: crop 140, size 64)."""
    return resize(center_crop(image, crop), size, size)
