"""Noise levels: the formulas as TensorFlow ops, run eagerly and inside exported graphs (`formulas`); the
schedule of a run and the checks with messages, in NumPy (`schedule`); choosing a schedule from the data
before training (`design`)."""
