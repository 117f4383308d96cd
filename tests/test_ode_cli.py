"""asm-sample and asm-eval with the ODE samplers and --num_steps, end to end on a tiny trained 2-D run."""

import json
import os

from conftest import run_cli


def test_asm_sample_names_the_sampler_and_its_network_calls(toy_run, tmp_path):
    out = str(tmp_path / "heun")
    result = run_cli("sample", "--workdir", toy_run, "--seeds", "0-9", "--sampler", "heun", "--num_steps", "4",
                     "--spacing", "rho", "--churn", "1", "--output_dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "7 network calls each" in result.stdout
    settings = json.load(open(os.path.join(out, "settings.json")))
    assert (settings["sampler"], settings["num_steps"], settings["spacing"], settings["churn"]) == ("heun", 4, "rho", 1)
    assert settings["network_calls"] == 7


def test_asm_sample_refuses_bad_level_settings_with_one_line(toy_run):
    for args, message in ((["--sampler", "euler", "--num_steps", "1"], "num_steps must be at least 2"),
                          (["--sampler", "euler", "--num_steps", "200"], "exceeds the"),
                          (["--sampler", "cas", "--eta", "0.5"], "eta applies to the euler sampler")):
        result = run_cli("sample", "--workdir", toy_run, "--seeds", "0-3", *args)
        lines = [line for line in result.stderr.splitlines() if line.startswith("asm-sample")]
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr[-2000:]


def test_asm_eval_sweeps_over_num_steps(toy_run, tmp_path):
    result = run_cli("evaluate", "--workdir", toy_run, "--checkpoints", "20", "--num_samples", "40",
                     "--num_real", "100", "--sampler", "euler", "--spacing", "rho", "--num_steps", "3,6")
    assert result.returncode == 0, result.stderr[-3000:]
    for count in (3, 6):
        output_dir = os.path.join(toy_run, "eval", f"toy2d_euler_rho{count}_N40")
        [name] = [name for name in os.listdir(output_dir) if name.endswith(".json")]
        report = json.load(open(os.path.join(output_dir, name)))
        assert report["num_steps"] == count and report["network_calls"] == count and report["spacing"] == "rho"
        assert report["results"]["denoised"]["distance_total"] > 0
