"""Per noise level of a digits run: its denoising error against the ideal denoiser's, and whether CAS started
from a noised test digit brings back a digit of the same class (tools/experiments/diagnose_levels.py prints and plots
it).

For each ladder level k the test split's digits x are noised as x + sigma_k z in model space, z drawn
statelessly from seed = the image's index (draw 0, as a sampler's initial value), the same z at every level.
Then:
- `mse`: the mean squared error of the run's one-step denoiser (EDS, EMA weights) at sigma_k, in model space;
  `posterior_mean_mse`: the same for the posterior mean under the run's training split
  (asm_tf/evaluation/ideal.py), the optimum on the training distribution; it only blends training images,
  so on test digits a network that generalises beats it at low noise;
- `returned`: CAS on sigma_k..sigma_L (the run's step size and n_sigma unless overridden), then the final
  denoising step, classified by the bundled digits classifier: the share that keep their label, overall and
  per class (`returned_per_class`, None for a class without images), and `confident`: the share classified
  with probability >= 0.9 whatever the class; `confusion`: test labels (rows) against the classes CAS brought
  them to (columns).
"""

import time

import numpy as np
import tensorflow as tf

from asm_tf import noise, sampling
from asm_tf.data import digits
from asm_tf.evaluation import ideal, modes
from asm_tf.noise_levels import formulas

DEFAULT_NUM_LEVELS = 8
DIGITS_SHAPE = (digits.IMAGE_SIZE, digits.IMAGE_SIZE, 1)


def check_digits(source):
    """Raises ValueError unless the run trains on the bundled 16x16x1 digits."""
    shape = tuple(source.example_shape)
    if source.name != "digits" or shape != DIGITS_SHAPE:
        raise ValueError(f"diagnose_levels needs the digits data (Experiment.data = @digits(), 16x16x1 images); "
                         f"this run trains on {source.name!r} examples of shape {shape}")


def parse_levels(text, num_levels):
    """Sorted distinct ladder indices from '0,5,29'; None gives DEFAULT_NUM_LEVELS spread over the ladder."""
    if text is None:
        return sorted(set(formulas.spread_indices(num_levels, DEFAULT_NUM_LEVELS).numpy().tolist()))
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--levels takes comma-separated ladder indices such as 0,5,29; got {text!r}") from None
    if not levels or levels[0] < 0 or levels[-1] >= num_levels:
        raise ValueError(f"--levels must be indices in 0..{num_levels - 1} (the ladder has {num_levels} levels), "
                         f"got {text!r}")
    return levels


def cas_settings(run_settings, step_size=None, n_sigma=None):
    """The run's SamplerSettings as CAS (with its CAS step size, SamplerSettings.with_sampler), with the step size
    and n_sigma overridden when given."""
    return run_settings.override(sampler="cas", step_size=step_size, n_sigma=n_sigma)


def make_cas(score_model, step_size, transform):
    """A tf.function (noisy, seeds, sub-ladder) -> the final EDS of CAS on that sub-ladder, in data space."""

    @tf.function(input_signature=[tf.TensorSpec([None, *DIGITS_SHAPE], tf.float32), tf.TensorSpec([None], tf.int64),
                                  tf.TensorSpec([None], tf.float32)])
    def cas(noisy, seeds, levels):
        return transform.to_data(sampling.cas(score_model, noisy, seeds, levels, step_size)[1])

    return cas


def in_batches(function, batch_size, *arrays):
    """function(*batch) as numpy, concatenated over batches of the arrays' first axis."""
    return np.concatenate([function(*(tf.constant(a[begin:begin + batch_size]) for a in arrays)).numpy()
                           for begin in range(0, len(arrays[0]), batch_size)])


def summarise_returns(predicted, confidences, labels):
    """returned (overall, per class: None without images), confident, the confusion matrix (rows: the test
    digits' labels, columns: the classes CAS brought them to), and the worst class with its rate and the class
    its lost digits most often became."""
    num = modes.NUM_DIGITS
    confusion = np.bincount(labels * num + predicted, minlength=num * num).reshape(num, num)
    per_class = [float(np.mean(predicted[labels == c] == c)) if np.any(labels == c) else None for c in range(num)]
    worst = min((c for c in range(num) if per_class[c] is not None), key=lambda c: per_class[c])
    became = np.where(np.arange(num) == worst, -1, confusion[worst])
    return {"returned": float(np.mean(predicted == labels)), "returned_per_class": per_class,
            "confident": float(np.mean(confidences >= modes.CONFIDENT)), "confusion": confusion.tolist(),
            "worst_class": worst, "worst_class_returned": per_class[worst],
            "worst_class_became": int(np.argmax(became)) if per_class[worst] < 1 else None}


def diagnose(loaded, *, levels=None, step_size=None, n_sigma=None, max_images=None, batch_size=500):
    """The report of a digits run (see the module docstring) loaded with run_loading.load_run: the ideal denoiser
    of its training split against its network; `levels` as parse_levels takes them."""
    source, schedule = loaded.experiment.data, loaded.experiment.schedule
    check_digits(source)
    if max_images is not None and max_images < 1:
        raise ValueError(f"--max_images must be at least 1, got {max_images}")
    settings = cas_settings(loaded.sampler_settings, step_size, n_sigma)
    settings.validate(schedule)
    ladder = schedule.sigmas()
    levels = parse_levels(levels, len(ladder))
    grid = settings.sampling_sigmas(schedule).astype(np.float32)
    split = source.split
    train = source.transform.to_model(tf.constant(digits.load_digits(split)[0])).numpy()
    images, labels = digits.load_digits("test")
    images, labels = images[:max_images], labels[:max_images]
    clean = source.transform.to_model(tf.constant(images)).numpy()
    seeds = np.arange(len(images), dtype=np.int64)
    z = noise.normal(noise.fold(seeds, 0), DIGITS_SHAPE).numpy()
    cas = make_cas(loaded.score_model, settings.step_size, source.transform)
    classifier = modes.load_classifier()
    rows = []
    for number, k in enumerate(levels, 1):
        start = time.time()
        sigma = float(ladder[k])
        sub_ladder = grid[k * settings.n_sigma:]
        print(f"level {number}/{len(levels)}: index {k}, sigma {sigma:.4g}, CAS over {len(sub_ladder)} levels "
              f"from {len(images)} noised test digits ...", flush=True)
        noisy = (clean + np.float32(sigma) * z).astype(np.float32)
        denoised = in_batches(lambda x: loaded.score_model.denoise(x, tf.fill([len(x)], sigma)), batch_size, noisy)
        ideal_denoised = ideal.posterior_mean(noisy, sigma, train)
        returned = in_batches(lambda x, s: cas(x, s, tf.constant(sub_ladder)), batch_size, noisy, seeds)
        predicted, confidences = modes.classify_digits(classifier, returned)
        rows.append({"level": k, "sigma": sigma, "cas_levels": len(sub_ladder),
                     "mse": float(np.mean(np.square(denoised - clean))),
                     "posterior_mean_mse": float(np.mean(np.square(ideal_denoised - clean))),
                     **summarise_returns(predicted, confidences, labels), "seconds": time.time() - start})
        print(f"    done in {rows[-1]['seconds']:.1f} s", flush=True)
    return {"checkpoint": loaded.step, "num_images": len(images), "training_split": split,
            "num_training_images": len(train), "step_size": settings.step_size, "n_sigma": settings.n_sigma,
            "confident_threshold": modes.CONFIDENT, "levels": rows}
