"""The reference's trained networks in asm-tf: reading the official PyTorch code's checkpoints and config.yml
(AlexiaJM/AdversarialConsistentScoreMatching) and placing every tensor in asm-tf's networks (`asm-import`).

files.py reads the two files without executing anything in them, run_config.py turns config.yml into a gin
configuration, weights.py maps the state dicts onto the Keras networks, importer.py writes the workdir. Only
`files` needs torch and PyYAML (`pip install -e ".[import]"`); nothing else in asm_tf imports this package.
"""
