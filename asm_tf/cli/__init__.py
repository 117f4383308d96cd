"""Command-line entry points: asm-train, asm-sample (absl flags + gin)."""
