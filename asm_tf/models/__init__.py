"""Score networks and discriminators; importing this package registers them with gin."""

from asm_tf.models import (  # noqa: F401
    discriminator,  # noqa: F401
    mlp,  # noqa: F401
    ncsnv2,
    unet,
)
