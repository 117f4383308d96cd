"""Command-line entry points: asm-train, asm-sample, asm-export, asm-eval (absl flags + gin)."""

import asm_tf

asm_tf.import_tensorflow_quietly()  # before the tools import it: no start-up INFO lines on their stderr
