"""Load test of an exported model run as TF Serving runs it: one session, many requests at once.

    python tools/benchmarks/load_test.py --export=runs/export/digits/1 --clients=1,4,8 --requests=64

Loads the SavedModel with the TF1 session loader that TF Serving uses and sends a fixed list of requests
(`serving_default` and `sample_cas` over distinct seeds, and every --bad_every-th a bad one: too many images,
or a CAS step size out of bounds) from C client threads sharing that session, for each C in --clients.
Each good request is first answered alone, one at a time; under load every response must equal that answer
exactly and every bad request must fail with InvalidArgument (and nothing else). Prints one JSON line per
level: requests/s, p50/p99 latency of the good requests, failures, mismatches and the process's resident
memory after the level; exits 1 if a request failed or differed.
"""

import argparse
import concurrent.futures
import dataclasses
import json
import os
import sys
import time
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # the TF1 loader's deprecation notice

INFO_FILE = os.path.join("assets.extra", "asm_export.json")  # written by asm-export beside the SavedModel
TOO_MANY = "seeds per request"
OUT_OF_BOUNDS = "outside the CAS bounds"


@dataclasses.dataclass
class Request:
    signature: str
    inputs: dict
    error: Optional[str] = None  # a bad request: the text its InvalidArgument error must contain


def make_requests(count, *, images, max_images, step_size, n_sigma, bad_every=0):
    """`count` requests over distinct seeds, alternating serving_default and sample_cas (denoised or not);
    with bad_every > 0, every bad_every-th is a bad one instead (too many images, or a step size far
    out of the CAS bounds, in turn)."""
    requests = []
    for k in range(count):
        seeds = np.arange(k * images, (k + 1) * images, dtype=np.int64)
        if bad_every and k % bad_every == bad_every - 1:
            if (k // bad_every) % 2 == 0:
                requests.append(Request("serving_default", {"seeds": np.arange(max_images + 1, dtype=np.int64)},
                                        TOO_MANY))
            else:
                requests.append(Request("sample_cas", _cas_inputs(seeds, 1.0, n_sigma, True), OUT_OF_BOUNDS))
        elif k % 2 == 0:
            requests.append(Request("serving_default", {"seeds": seeds}))
        else:
            requests.append(Request("sample_cas", _cas_inputs(seeds, step_size, n_sigma, k % 4 == 1)))
    return requests


def _cas_inputs(seeds, step_size, n_sigma, denoise):
    return {"seeds": seeds, "step_size": np.float32(step_size), "n_sigma": np.int32(n_sigma),
            "denoise": np.bool_(denoise)}


class SessionServer:
    """An export loaded with tf.compat.v1.saved_model.loader into one Session, whose run() is thread-safe."""

    def __init__(self, path):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], path)
        self.signatures = meta.signature_def
        self.graph.finalize()  # as in TF Serving: serving adds no ops

    def __call__(self, request):
        signature = self.signatures[request.signature]
        feeds = {signature.inputs[name].name: value for name, value in request.inputs.items()}
        fetches = {name: tensor.name for name, tensor in signature.outputs.items()}
        return self.session.run(fetches, feeds)

    def close(self):
        self.session.close()


def resident_mb():
    """This process's resident memory (VmRSS) in MB."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024.0


def single_answers(server, requests):
    """{index: outputs} of every good request sent alone, one at a time."""
    return {index: server(request) for index, request in enumerate(requests) if request.error is None}


def _one(server, request, expected):
    """(latency in seconds, outcome) of one request: 'ok', 'rejected' (bad, as expected), 'mismatch' or
    'failed: ...'."""
    start = time.perf_counter()
    try:
        outputs = server(request)
    except tf.errors.InvalidArgumentError as error:
        outcome = "rejected" if request.error and request.error in error.message else f"failed: {error.message}"
        return time.perf_counter() - start, outcome
    except Exception as error:  # noqa: BLE001  (any other failure is counted and reported)
        return time.perf_counter() - start, f"failed: {type(error).__name__}: {error}"
    latency = time.perf_counter() - start
    if request.error:
        return latency, "failed: a bad request was answered"
    same = outputs.keys() == expected.keys() and all(np.array_equal(outputs[k], expected[k]) for k in expected)
    return latency, "ok" if same else "mismatch"


def run_level(server, requests, expected, clients):
    """Sends every request from `clients` threads; returns the level's report."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda index: _one(server, requests[index], expected.get(index)),
                                range(len(requests))))
    seconds = time.perf_counter() - start
    good = [latency for (latency, outcome), request in zip(results, requests) if request.error is None]
    failures = sorted({outcome for _, outcome in results if outcome.startswith("failed")})
    return {
        "clients": clients, "requests": len(requests), "seconds": round(seconds, 3),
        "requests_per_second": round(len(requests) / seconds, 2),
        "good_requests_per_second": round(len(good) / seconds, 2),
        "p50_ms": round(1000 * float(np.percentile(good, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(good, 99)), 1),
        "ok": sum(outcome == "ok" for _, outcome in results),
        "rejected": sum(outcome == "rejected" for _, outcome in results),
        "mismatches": sum(outcome == "mismatch" for _, outcome in results),
        "failed": sum(outcome.startswith("failed") for _, outcome in results), "failures": failures[:3],
        "rss_mb": round(resident_mb(), 1),
    }


def load_test(path, *, clients, requests, images, bad_every, rounds=1):
    """Reports (one per level and round) of the export at `path`; see the module docstring."""
    with open(os.path.join(path, INFO_FILE), encoding="utf-8") as f:
        info = json.load(f)
    settings = info["serving_settings"]
    requests = make_requests(requests, images=images, max_images=info["max_images"],
                             step_size=settings["step_size"], n_sigma=settings["n_sigma"], bad_every=bad_every)
    server = SessionServer(path)
    try:
        expected = single_answers(server, requests)
        return [run_level(server, requests, expected, count) for _ in range(rounds) for count in clients]
    finally:
        server.close()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", required=True, help="an export version directory, EXPORT_DIR/NAME/VERSION")
    parser.add_argument("--clients", default="1,4,8", help="concurrent clients, one level each")
    parser.add_argument("--requests", type=int, default=64, help="requests per level")
    parser.add_argument("--images", type=int, default=2, help="images (seeds) per good request")
    parser.add_argument("--bad_every", type=int, default=8, help="every k-th request is a bad one (0: none)")
    parser.add_argument("--rounds", type=int, default=1, help="times the whole list of levels is run")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    load_before = os.getloadavg()
    reports = load_test(args.export, clients=[int(c) for c in args.clients.split(",")], requests=args.requests,
                        images=args.images, bad_every=args.bad_every, rounds=args.rounds)
    for report in reports:
        print(json.dumps(report))
    print(json.dumps({"load_average_before": [round(v, 2) for v in load_before],
                      "load_average_after": [round(v, 2) for v in os.getloadavg()]}))
    return 1 if any(r["failed"] or r["mismatches"] for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
