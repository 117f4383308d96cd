"""Score networks and discriminators; importing this package registers them with gin."""

from asm_tf.models import mlp  # noqa: F401
from asm_tf.models import discriminator  # noqa: F401
from asm_tf.models import ncsnv2, unet  # noqa: F401
