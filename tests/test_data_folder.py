"""Image folders and FFHQ from a folder: recursion, resizing, channel conversion, unreadable files."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from asm_tf.data import image_folder


def _save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture()
def mixed_folder(tmp_path):
    """Five decodable images (RGB PNG, grayscale JPEG, RGBA PNG, nested), one corrupt, one not an image."""
    rng = np.random.default_rng(0)
    _save(str(tmp_path / "a.png"), rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    _save(str(tmp_path / "b.JPG"), np.full((40, 24), 200, np.uint8))
    _save(str(tmp_path / "deep" / "er" / "c.png"), rng.integers(0, 256, (24, 24, 4), dtype=np.uint8))
    _save(str(tmp_path / "deep" / "d.jpeg"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    _save(str(tmp_path / "e.png"), rng.integers(0, 256, (6, 9, 3), dtype=np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this file is cut short")
    (tmp_path / "notes.txt").write_text("not an image")
    return str(tmp_path)


def _epoch(source, batch_size=5):
    return next(iter(source.make_dataset(batch_size, seed=0))).numpy()


def test_folder_images_are_resized_cropped_and_in_unit_range(mixed_folder, caplog):
    with caplog.at_level(logging.WARNING):
        source = image_folder.image_folder(mixed_folder, image_size=8, channels=3, random_flip=False)
    assert source.example_shape == (8, 8, 3) and source.num_examples == 5
    batch = _epoch(source)
    assert batch.shape == (5, 8, 8, 3) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    grayscale = [image for image in batch if np.allclose(image, 200 / 255.0, atol=1e-6)]
    assert len(grayscale) == 1  # the grayscale JPEG became three equal channels, upscaled to 8x8


def test_unreadable_files_are_skipped_with_a_warning_naming_each(mixed_folder, caplog):
    with caplog.at_level(logging.WARNING):
        image_folder.image_folder(mixed_folder, image_size=8)
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "broken.png" in messages and "skipped 1 unreadable of 6 image files" in messages
    assert "notes.txt" not in messages


def test_unreadable_file_stops_when_configured(mixed_folder):
    with pytest.raises(ValueError, match="broken.png.*on_error='skip'"):
        image_folder.image_folder(mixed_folder, image_size=8, on_error="raise")


def test_grayscale_channels(mixed_folder):
    source = image_folder.image_folder(mixed_folder, image_size=8, channels=1)
    assert source.example_shape == (8, 8, 1) and _epoch(source).shape == (5, 8, 8, 1)
    with pytest.raises(ValueError, match="channels"):
        image_folder.image_folder(mixed_folder, image_size=8, channels=4)


def test_streaming_from_files_equals_in_memory_and_resumes(mixed_folder, tmp_path):
    in_memory = image_folder.image_folder(mixed_folder, image_size=8, in_memory=True)
    streaming = image_folder.image_folder(mixed_folder, image_size=8, in_memory=False)
    memory_batches = [b.numpy() for _, b in zip(range(4), in_memory.make_dataset(3, seed=7))]
    iterator = iter(streaming.make_dataset(3, seed=7))
    np.testing.assert_array_equal(next(iterator).numpy(), memory_batches[0])
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "ckpt"))
    fresh = iter(streaming.make_dataset(3, seed=7))
    tf.train.Checkpoint(iterator=fresh).read(path).assert_consumed()
    for expected in memory_batches[1:]:
        np.testing.assert_array_equal(next(fresh).numpy(), expected)


def test_missing_or_empty_folder_fails_clearly_when_batches_are_asked_for(tmp_path):
    missing = image_folder.image_folder(str(tmp_path / "nowhere"), image_size=8, channels=1)
    assert missing.example_shape == (8, 8, 1) and "does not exist" in missing.missing
    with pytest.raises(FileNotFoundError, match="does not exist"):
        missing.make_dataset(4, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no PNG or JPEG"):
        image_folder.image_folder(str(tmp_path / "empty")).make_dataset(4, 0)


def test_ffhq_folder_is_split_ninety_ten(tmp_path):
    for i in range(20):
        _save(str(tmp_path / "ffhq" / f"{i:05d}.png"), np.full((12, 12, 3), 10 * i, np.uint8))
    train = image_folder.ffhq(data_dir=str(tmp_path), image_size=4, random_flip=False)
    test = image_folder.ffhq(path=str(tmp_path / "ffhq"), image_size=4, split="test", random_flip=False)
    assert (train.name, train.example_shape, train.num_examples, test.num_examples) == ("ffhq", (4, 4, 3), 18, 2)
    values = lambda source, n: set(np.rint(_epoch(source, n)[:, 0, 0, 0] * 255).astype(int).tolist())
    assert values(train, 18) | values(test, 2) == set(range(0, 200, 10))
    assert not values(train, 18) & values(test, 2)


def test_ffhq_without_a_location_says_what_to_give():
    source = image_folder.ffhq()
    assert source.example_shape == (256, 256, 3)
    with pytest.raises(FileNotFoundError, match="ffhq.path"):
        source.make_dataset(4, 0)
