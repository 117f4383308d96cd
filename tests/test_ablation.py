"""tools/experiments/ablation.py end to end on a tiny grid (one tiny UNet trained with DSM, ALS and CAS), resumed
once."""

import csv
import os
import subprocess
import sys

from conftest import REPO

TINY = ["--budget_seconds=0.1", "--seeds=0", "--networks=unet", "--trainings=dsm", "--num_samples=20",
        "--sweep_samples=20", "--als_step_sizes=2e-4", "--cas_step_sizes=3e-4,4.5e-4",
        "--gin_bindings=UNet.ch = 8", "--gin_bindings=NoiseSchedule.num_levels = 6",
        "--gin_bindings=SamplerSettings.step_size = 4e-4"]


def _ablation(output_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    tool = os.path.join(REPO, "tools", "experiments", "ablation.py")
    return subprocess.run([sys.executable, tool, f"--output_dir={output_dir}",
                           *TINY], capture_output=True, text=True, env=env, timeout=600, cwd=REPO)


def _files(directory):
    return {os.path.join(root, name): os.path.getmtime(os.path.join(root, name))
            for root, _, names in os.walk(directory) for name in names}


def test_tiny_ablation_writes_its_table_and_resumes_without_redoing_anything(tmp_path):
    output_dir = tmp_path / "ablation"
    first = _ablation(output_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "calibrating unet/dsm" in first.stdout and "training unet/dsm seed 0, 50 steps" in first.stdout
    assert "step sizes of cas" in first.stdout and "step sizes of als" not in first.stdout  # one ALS step size
    with open(output_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((row["sampler"], row["output"]) for row in rows) == [
        ("als", "denoised"), ("als", "samples"), ("cas", "denoised"), ("cas", "samples")]
    assert {row["num_samples"] for row in rows} == {"20"}
    assert {float(row["step_size"]) for row in rows if row["sampler"] == "als"} == {2e-4}
    assert {float(row["step_size"]) for row in rows if row["sampler"] == "cas"} <= {3e-4, 4.5e-4}
    assert all(float(row["fdd"]) > float(row["fdd_floor"]) > 0 for row in rows)  # 50 steps: far from real digits
    table = (output_dir / "table.md").read_text()
    assert "| unet | dsm | 50 | cas |" in table and "denoising helps (unet/dsm/cas)" in table
    assert (output_dir / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = _files(output_dir)
    again = _ablation(output_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained before" in again.stdout
    assert not any(stage in again.stdout for stage in ("calibrating", ": training ", "step sizes of", "evaluating"))
    changed = {path for path, mtime in _files(output_dir).items() if before.get(path) != mtime}
    assert changed <= {str(output_dir / name) for name in ("results.csv", "table.md", "table.png")}
    assert (output_dir / "table.md").read_text() == table
