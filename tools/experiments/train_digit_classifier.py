"""Trains and saves the digit classifiers used for mode coverage (asm_tf.evaluation.modes).

  python tools/experiments/train_digit_classifier.py --dataset=digits   # bundled 16x16 digits -> the packaged asset
  python tools/experiments/train_digit_classifier.py --dataset=mnist --data_dir=DIR --output=mnist_classifier.keras

MNIST must be prepared once with `tfds build mnist --data_dir=DIR`; nothing is downloaded here.
"""

from absl import app, flags

import asm_tf  # noqa: E402

asm_tf.import_tensorflow_quietly()  # before TensorFlow: oneDNN on, no start-up lines on stderr

from asm_tf.evaluation import modes  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "digits", ["digits", "mnist"], "Train on the bundled digits or on MNIST (28x28).")
flags.DEFINE_string("data_dir", None, "TFDS data directory where mnist is prepared (--dataset=mnist).")
flags.DEFINE_string("output", None, "Where to save the .keras model; default for digits: the packaged asset.")
flags.DEFINE_integer("epochs", None, "Training epochs (default: 60 for digits, 14 for MNIST).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, shuffling and dropout.")


def main(argv):
    del argv
    epochs = {} if FLAGS.epochs is None else {"epochs": FLAGS.epochs}
    if FLAGS.dataset == "digits":
        output = FLAGS.output or modes.default_digits_classifier_path()
        classifier, test_accuracy = modes.train_digits_classifier(seed=FLAGS.seed, **epochs)
    else:
        if not FLAGS.output:
            raise app.UsageError("--dataset=mnist needs --output=PATH.keras")
        output = FLAGS.output
        classifier, test_accuracy = modes.train_mnist_classifier(data_dir=FLAGS.data_dir, seed=FLAGS.seed, **epochs)
    modes.save_classifier(classifier, output)
    print(f"{FLAGS.dataset} classifier: test accuracy {test_accuracy:.4f}; saved to {output}")


if __name__ == "__main__":
    app.run(main)
