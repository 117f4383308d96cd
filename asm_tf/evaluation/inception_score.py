"""Inception Score: exp(E_x KL(p(y|x) || p(y))) over 10 splits, from an extractor's logits."""

import dataclasses

import numpy as np
import scipy.special

from asm_tf.evaluation import fid

DEFAULT_SPLITS = 10


@dataclasses.dataclass(frozen=True)
class InceptionScore:
    """Mean and (population) standard deviation of the score over `splits` consecutive parts of the images."""

    mean: float
    std: float
    num_images: int
    splits: int


def inception_score(logits, *, splits=DEFAULT_SPLITS):
    """The Inception Score of class logits [N, K]; part k holds images floor(k N / splits) .. floor((k+1) N / splits)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must be [N, K], got shape {logits.shape}")
    num_images = len(logits)
    if num_images < splits:
        raise ValueError(f"the Inception Score with {splits} splits needs at least {splits} images, got {num_images}")
    log_probs = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    bounds = [k * num_images // splits for k in range(splits + 1)]
    scores = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        part = log_probs[start:stop]
        log_marginal = scipy.special.logsumexp(part, axis=0) - np.log(len(part))
        divergences = np.sum(np.exp(part) * (part - log_marginal), axis=1)
        scores.append(np.exp(np.mean(divergences)))
    return InceptionScore(mean=float(np.mean(scores)), std=float(np.std(scores)), num_images=num_images,
                          splits=splits)


def inception_score_of_images(images, *, extractor, batch_size=fid.DEFAULT_BATCH_SIZE, splits=DEFAULT_SPLITS):
    """The Inception Score of images (an array or an iterable of batches, in [0, 1] or uint8)."""
    features = fid.image_features(images, extractor=extractor, batch_size=batch_size, keep_logits=True)
    return inception_score(features.logits, splits=splits)
