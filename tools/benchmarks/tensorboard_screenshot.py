"""A screenshot of a run's TensorBoard dashboard as a person sees it, taken with headless Chromium.

    python tools/benchmarks/tensorboard_screenshot.py --logdir=runs/quickstart/tensorboard --output=docs/tensorboard_images.png

Starts TensorBoard on a free port, waits until it serves, points `chromium --headless --screenshot` at the
dashboard (`--dashboard=images`, `scalars`, `text`, `hparams`...) and stops TensorBoard. Needs Chromium
(Debian: `apt-get install chromium`).
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from absl import app, flags

flags.DEFINE_string("logdir", None, "TensorBoard log directory (WORKDIR/tensorboard).")
flags.DEFINE_string("output", None, "PNG to write.")
flags.DEFINE_string("dashboard", "images", "TensorBoard dashboard (the part of the URL after #).")
flags.DEFINE_integer("width", 1400, "Window width in pixels.")
flags.DEFINE_integer("height", 1800, "Window height in pixels.")
flags.DEFINE_integer("wait_ms", 15000, "Time Chromium lets the page load and draw, in milliseconds.")
FLAGS = flags.FLAGS
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"TensorBoard exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"TensorBoard did not serve {url} within {timeout} s")


def main(argv):
    del argv
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        sys.exit("no Chromium found: install it (Debian: apt-get install chromium)")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", FLAGS.logdir, "--port",
                               str(port), "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/"
        wait_until_serving(base, server)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--user-data-dir={profile}", f"--window-size={FLAGS.width},{FLAGS.height}",
                            f"--virtual-time-budget={FLAGS.wait_ms}", f"--screenshot={FLAGS.output}",
                            f"{base}?darkMode=false#{FLAGS.dashboard}"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        print(f"wrote {FLAGS.output} ({FLAGS.dashboard} of {FLAGS.logdir})")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    flags.mark_flags_as_required(["logdir", "output"])
    app.run(main)
