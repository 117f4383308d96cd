"""Training (docs/training.md): the loop (`trainer`), the DSM loss (`dsm`), the adversarial part
(`adversarial`, `gan_losses`), `optimizers`, `ema`, mixed `precision`, `checkpointing`, `preemption`,
multi-replica `distribution` and the TensorBoard `previews`."""


def __getattr__(name):
    """`asm_tf.training.Trainer`, imported on first use: checkpointing is needed by asm_tf.workdir, which the
    trainer imports."""
    if name == "Trainer":
        from asm_tf.training.trainer import Trainer
        return Trainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
