"""Checks that each kind of install yields exactly one TensorFlow 2.21, without installing anything.

For the CPU command (`pip install -e .`) and the GPU command (`ASM_TF_DEVICE=gpu pip install -e .`) it asks pip
what it would install into an empty environment (`pip install --dry-run --ignore-installed --report`: pip reads
the packages' metadata, not the wheels), checks that exactly one TensorFlow distribution is among them (and, for
the GPU, its CUDA wheels), and runs `pip check` on the current environment.

    python tools/check_install.py                # both kinds (the GPU resolution reads PyPI: about 2 minutes)
    python tools/check_install.py --device=gpu
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENSORFLOW_VERSION = "2.21.0"
# Distributions that each install the `tensorflow` package: two of them overwrite each other's files.
TENSORFLOW_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos",
                            "tf-nightly", "tf-nightly-cpu"}
EXPECTED = {"cpu": "tensorflow-cpu", "gpu": "tensorflow"}
CUDA_WHEELS = ("nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_report(device, *pip_args):
    """pip's installation report for `ASM_TF_DEVICE=device pip install -e REPO` into an empty environment."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "report.json")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", path,
             *pip_args, "-e", REPO], env=dict(os.environ, ASM_TF_DEVICE=device), capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"pip could not resolve the {device} install: {result.stderr.strip()[-2000:]}")
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def requested_tensorflows(device):
    """The TensorFlow requirements of asm-tf's own metadata for `device` (offline: no dependency is resolved)."""
    report = pip_report(device, "--no-deps", "--no-index", "--no-build-isolation")
    requires = report["install"][0]["metadata"].get("requires_dist", [])
    return [requirement for requirement in requires
            if canonical(re.match(r"[A-Za-z0-9._-]+", requirement).group()) in TENSORFLOW_DISTRIBUTIONS]


def resolved(device):
    """{distribution: version} that the install for `device` would bring into an empty environment."""
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in pip_report(device)["install"]}


def problems(device, distributions):
    """What is wrong with a resolution: not exactly one TensorFlow 2.21 of the device's kind, missing CUDA wheels."""
    found = sorted(f"{name}=={distributions[name]}" for name in TENSORFLOW_DISTRIBUTIONS & set(distributions))
    wanted = f"{EXPECTED[device]}=={TENSORFLOW_VERSION}"
    errors = [] if found == [wanted] else [f"{device}: TensorFlow distributions {found}, expected only {wanted}"]
    missing = [name for name in CUDA_WHEELS if name not in distributions] if device == "gpu" else []
    return errors + ([f"gpu: CUDA wheels {missing} missing"] if missing else [])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu", "both"], default="both")
    args = parser.parse_args()
    errors = []
    for device in ("cpu", "gpu") if args.device == "both" else (args.device,):
        distributions = resolved(device)
        tensorflows = {name: version for name, version in distributions.items() if name in TENSORFLOW_DISTRIBUTIONS}
        cuda = sorted(name for name in distributions if name.startswith("nvidia-"))
        print(f"{device}: {len(distributions)} distributions; TensorFlow: {tensorflows}; CUDA wheels: {len(cuda)} "
              f"({', '.join(cuda) or 'none'})", flush=True)
        errors += problems(device, distributions)
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    print(f"pip check of this environment: {check.stdout.strip() or check.stderr.strip()}")
    if check.returncode:
        errors.append("pip check failed")
    if errors:
        sys.exit("check_install: " + "; ".join(errors))


if __name__ == "__main__":
    main()
