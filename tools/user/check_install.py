"""Checks that each kind of install yields exactly one TensorFlow 2.21, without installing anything.

For the CPU command (`pip install -e .`) and the GPU command (`pip install -e ".[gpu]"`; a built wheel has the same
metadata) it asks pip what it would install into an empty environment (`pip install --dry-run --ignore-installed
--report`: pip reads the packages' metadata, not the wheels), checks that exactly one TensorFlow distribution is
among them, the universal `tensorflow` (and, for the GPU, its CUDA wheels), and runs `pip check` on the current
environment.

    python tools/user/check_install.py                # both kinds (the GPU resolution reads PyPI: about 2 minutes)
    python tools/user/check_install.py --device=gpu
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TENSORFLOW_VERSION = "2.21.0"
# Distributions that each install the `tensorflow` package: two of them overwrite each other's files.
TENSORFLOW_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos",
                            "tf-nightly", "tf-nightly-cpu"}
EXPECTED = "tensorflow"
EXTRAS = {"cpu": "", "gpu": "[gpu]"}
CUDA_WHEELS = ("nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_report(device, *pip_args):
    """pip's installation report for `pip install -e REPO` (cpu) or `-e REPO[gpu]` into an empty environment."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "report.json")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", path,
             *pip_args, "-e", REPO + EXTRAS[device]], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"pip could not resolve the {device} install: {result.stderr.strip()[-2000:]}")
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def requested_tensorflows(device):
    """The TensorFlow requirements of asm-tf's own metadata that the install for `device` brings (offline: no
    dependency is resolved), without their environment markers."""
    if device not in EXTRAS:
        raise RuntimeError(f"device {device!r}: use cpu (the default) or gpu")
    report = pip_report("cpu", "--no-deps", "--no-index", "--no-build-isolation")
    requires = report["install"][0]["metadata"].get("requires_dist", [])
    chosen = []
    for requirement in requires:
        name = canonical(re.match(r"[A-Za-z0-9._-]+", requirement).group())
        extra = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", requirement)
        if name in TENSORFLOW_DISTRIBUTIONS and (extra is None or EXTRAS[device] == f"[{extra.group(1)}]"):
            chosen.append(requirement.split(";")[0].strip())
    return chosen


def resolved(device):
    """{distribution: version} that the install for `device` would bring into an empty environment."""
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in pip_report(device)["install"]}


def problems(device, distributions):
    """What is wrong with a resolution: not exactly one TensorFlow 2.21 of the device's kind, missing CUDA wheels."""
    found = sorted(f"{name}=={distributions[name]}" for name in TENSORFLOW_DISTRIBUTIONS & set(distributions))
    wanted = f"{EXPECTED}=={TENSORFLOW_VERSION}"
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
