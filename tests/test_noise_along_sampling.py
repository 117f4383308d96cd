"""tools/experiments/noise_along_sampling.py (Figure 1 with a trained network) on a tiny untrained run."""

import csv
import importlib

import numpy as np
import pytest
from test_export import write_run

tool = importlib.import_module("tools.experiments.noise_along_sampling")


def test_one_row_per_level_that_each_sampler_walks(tmp_path, clean_gin, capsys):
    workdir = write_run(tmp_path)  # 4 levels from 1 to 0.05; CAS with n_sigma 2 walks 7
    output = tmp_path / "figure" / "noise.png"
    tool.main(["--run", f"tiny={workdir}", "--step_sizes", "tiny=0.001,0.002", "--num_samples", "8",
               "--output", str(output)])
    assert output.exists()
    with open(tmp_path / "figure" / "noise.csv") as f:
        rows = list(csv.DictReader(f))
    levels = {sampler: [float(r["sigma"]) for r in rows if r["sampler"] == sampler] for sampler in ("als", "cas")}
    assert len(levels["als"]) == 4 and len(levels["cas"]) == 7
    for sampler, sigmas in levels.items():
        assert sigmas[0] == pytest.approx(1.0, rel=1e-5) and sigmas[-1] == pytest.approx(0.05, rel=1e-5)
        assert np.all(np.diff(sigmas) < 0)
    assert all(float(r["std"]) > 0 for r in rows)
    assert "tiny als: std / sigma at the first, middle and last level" in capsys.readouterr().out


def test_step_sizes_for_an_unknown_label_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        tool.main(["--run", "a=/nowhere", "--step_sizes", "b=1e-4,2e-4", "--output", str(tmp_path / "x.png")])
    assert "--step_sizes for labels without a --run: ['b']" in capsys.readouterr().err
