"""asm-tf: adversarial score matching and consistent annealed sampling (Jolicoeur-Martineau et al., ICLR 2021)."""

__version__ = "0.1.0"
