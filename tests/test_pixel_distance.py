"""tools/experiments/pixel_distance.py: the pixel-space Fréchet distance of digit samples against its real floor."""

import importlib

import numpy as np
import pytest

from asm_tf.data.digits import load_digits

tool = importlib.import_module("tools.experiments.pixel_distance")


def test_real_digits_sit_at_the_floor_and_noise_far_above_it(tmp_path, capsys):
    train, _ = load_digits("train")
    rng = np.random.default_rng(1)
    real = np.round(train[rng.permutation(len(train))[:300]] * 255).astype(np.uint8)
    blurred = np.round(train[:300] * 0.5 * 255 + 0.25 * 255).astype(np.uint8)  # contrast halved, grey background
    np.savez(tmp_path / "real.npz", denoised=real, final=real)
    np.savez(tmp_path / "washed.npz", denoised=blurred, final=blurred)
    tool.main(["--samples", f"real={tmp_path / 'real.npz'}", "--samples", f"washed={tmp_path / 'washed.npz'}",
               "--csv", str(tmp_path / "pixels.csv")])
    rows = {line.split(",")[0]: [float(v) for v in line.split(",")[1:]]
            for line in (tmp_path / "pixels.csv").read_text().splitlines()[1:]}
    assert rows["real"][0] == 300 and rows["real"][3] == pytest.approx(1.0, abs=0.15)
    assert rows["washed"][3] > 3.0
    assert "washed: pixel Fréchet distance" in capsys.readouterr().out


def test_images_that_are_not_digits_are_refused(tmp_path, capsys):
    np.savez(tmp_path / "cifar.npz", denoised=np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(SystemExit, match="not digits"):
        tool.main(["--samples", f"x={tmp_path / 'cifar.npz'}"])
