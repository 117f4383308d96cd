"""Client for an asm-tf model served by TF Serving: REST (default) or gRPC.

    python tools/user/serving_client.py --model=c10 --seeds=0-15 --output=samples.png
    python tools/user/serving_client.py --model=c10 --signature=sample_cas --seeds=0-7 --n_sigma=2 --step_size=3e-6
    python tools/user/serving_client.py --model=c10 --signature=inpaint --images=faces.npz --mask=mask.png --seeds=0-3
    python tools/user/serving_client.py --model=c10 --seeds=0-3 --print_request   # the JSON body, no server needed

REST posts the columnar request `{"signature_name": ..., "inputs": {...}}` to
SERVER/v1/models/MODEL[/versions/N]:predict and reads `{"outputs": {...}}`. gRPC (--grpc=HOST:8500) sends
a PredictRequest; it needs `pip install --no-deps tensorflow-serving-api` and TensorFlow, imported only then.
The REST path needs only numpy (and Pillow for PNG files). Outputs: a PNG grid of the images (or a CSV of points) and
an .npz of every output, named after --output.
"""

import argparse
import json
import math
import os
import sys
import urllib.error
import urllib.request

import numpy as np

SIGNATURES = ("serving_default", "sample_cas", "sample_als", "inpaint", "denoise")


def parse_seeds(text):
    """'0-15', '3,7,11' or '0-9,100' -> list of ints (ranges include both ends)."""
    seeds = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-") if "-" in part[1:] else (part, "", part)
        if int(last) < int(first):
            raise ValueError(f"empty seed range {part!r}")
        seeds.extend(range(int(first), int(last) + 1))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return seeds


def load_array(path, key=None):
    """float32 array from .npy, .npz (first array, or `key`) or an image file (scaled to [0, 1])."""
    if path.endswith(".npy"):
        return np.load(path).astype(np.float32)
    if path.endswith(".npz"):
        arrays = np.load(path)
        array = arrays[key or arrays.files[0]]
        return (array / 255.0 if array.dtype == np.uint8 else array).astype(np.float32)
    from PIL import Image

    image = np.asarray(Image.open(path), np.float32) / 255.0
    return image[..., None] if image.ndim == 2 else image


def build_inputs(args):
    """The signature's named inputs as numpy arrays."""
    seeds = np.asarray(parse_seeds(args.seeds), np.int64) if args.seeds else None
    if args.signature == "serving_default":
        return {"seeds": seeds}
    if args.signature in ("sample_cas", "sample_als"):
        missing = [name for name in ("step_size", "n_sigma") if getattr(args, name) is None]
        if missing:
            raise ValueError(f"{args.signature} needs --{' and --'.join(missing)}")
        return {"seeds": seeds, "step_size": np.float32(args.step_size), "n_sigma": np.int32(args.n_sigma),
                "denoise": np.bool_(args.denoise)}
    if not args.images:
        raise ValueError(f"{args.signature} needs --images (.npz, .npy or an image file)")
    images = load_array(args.images)
    images = images[None] if images.ndim in (1, 3) else images  # one example
    name = "points" if images.ndim == 2 else "images"
    if args.signature == "denoise":
        if args.sigma is None:
            raise ValueError("denoise needs --sigma (the noise level of the noisy images)")
        return {f"noisy_{name}": images, "sigma": np.full([len(images)], args.sigma, np.float32)}
    if not args.mask:
        raise ValueError("inpaint needs --mask (1 = known, 0 = to sample), e.g. a black-and-white PNG")
    mask = np.round(load_array(args.mask))
    if mask.ndim == images.ndim - 1:
        mask = np.broadcast_to(mask[None], (len(images), *mask.shape))
    if seeds is None or len(seeds) != len(images):
        raise ValueError(f"inpaint needs one seed per image: give --seeds with {len(images)} seeds")
    return {name: images, "mask": mask[..., :1] if mask.shape[-1] != images.shape[-1] else mask, "seeds": seeds}


def rest_request(signature, inputs):
    """The columnar ("inputs") JSON body of a TF Serving predict request."""
    def plain(value):  # a float32 scalar as its shortest decimal (0.002, not 0.0020000000949949026)
        return float(str(value)) if value.dtype == np.float32 and value.ndim == 0 else value.tolist()

    return {"signature_name": signature, "inputs": {name: plain(np.asarray(value)) for name, value in inputs.items()}}


def rest_predict(server, model, version, body, timeout):
    """POST /v1/models/MODEL[/versions/N]:predict; {output name: numpy array}."""
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
    request = urllib.request.Request(server.rstrip("/") + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.load(response)
    except urllib.error.HTTPError as error:  # TF Serving answers {"error": "..."} with the graph's message
        detail = error.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except json.JSONDecodeError:
            pass
        raise RuntimeError(f"the server refused the request ({error.code}): {detail}") from None
    except urllib.error.URLError as error:
        raise RuntimeError(f"cannot reach {server} ({error.reason}): is TF Serving running with its REST port "
                           "published (docker run -p 8501:8501 ...)?") from None
    outputs = reply["outputs"]
    if not isinstance(outputs, dict):  # a signature with a single output answers with the bare value
        outputs = {"points": outputs}
    return {name: np.asarray(value) for name, value in outputs.items()}


def grpc_predict(target, model, version, signature, inputs, timeout):
    """A PredictRequest over gRPC (tensorflow-serving-api, installed with --no-deps, and TensorFlow)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
    try:
        reply = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as error:
        raise RuntimeError(f"the server refused the request ({error.code().name}): {error.details()}") from None
    return {name: tf.make_ndarray(proto) for name, proto in reply.outputs.items()}


def image_grid(images):
    """uint8 [N, H, W, C] -> one uint8 grid picture."""
    n, h, w, c = images.shape
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, c), np.uint8)
    for k, image in enumerate(images):
        r, col = divmod(k, columns)
        grid[r * h:(r + 1) * h, col * w:(col + 1) * w] = image
    return grid[..., 0] if c == 1 else grid


def save_outputs(outputs, path):
    """PATH.npz with every output, and the images as a PNG grid (PATH itself) or the points as PATH.csv."""
    stem = os.path.splitext(path)[0]
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    np.savez(stem + ".npz", **outputs)
    written = [stem + ".npz"]
    if "images" in outputs:
        try:
            from PIL import Image
        except ImportError:
            written.append("no PNG grid (pip install Pillow for one)")
        else:
            Image.fromarray(image_grid(np.asarray(outputs["images"], np.uint8))).save(stem + ".png")
            written.append(stem + ".png")
    elif "points" in outputs:
        np.savetxt(stem + ".csv", outputs["points"], delimiter=",", fmt="%.6g")
        written.append(stem + ".csv")
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://localhost:8501", help="TF Serving's REST address")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="use gRPC at this address (e.g. localhost:8500)")
    parser.add_argument("--model", required=True, help="MODEL_NAME the server serves (asm-export --name)")
    parser.add_argument("--version", type=int, help="model version (default: the server's latest)")
    parser.add_argument("--signature", choices=SIGNATURES, default="serving_default")
    parser.add_argument("--seeds", default="0-7", help="seeds, one example each: 0-15, 1,5,9 or both")
    parser.add_argument("--step_size", type=float, help="sample_cas / sample_als: step size epsilon")
    parser.add_argument("--n_sigma", type=int, help="sample_cas / sample_als: n_sigma")
    parser.add_argument("--denoise", action=argparse.BooleanOptionalAction, default=True,
                        help="sample_cas / sample_als: return the final denoising step's output")
    parser.add_argument("--images", help="inpaint / denoise: images in [0, 1] (.npz, .npy or an image file)")
    parser.add_argument("--mask", help="inpaint: known pixels (1) and pixels to sample (0), same formats")
    parser.add_argument("--sigma", type=float, help="denoise: noise level of every noisy image")
    parser.add_argument("--output", default="served.png", help="where the PNG grid (and the .npz) go")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the answer")
    parser.add_argument("--print_request", action="store_true", help="print the REST JSON body and exit")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        inputs = build_inputs(args)
        if args.print_request:
            print(json.dumps(rest_request(args.signature, inputs)))
            return 0
        if args.grpc:
            outputs = grpc_predict(args.grpc, args.model, args.version, args.signature, inputs, args.timeout)
        else:
            outputs = rest_predict(args.server, args.model, args.version, rest_request(args.signature, inputs),
                                   args.timeout)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"serving_client: error: {error}", file=sys.stderr)
        return 2
    shapes = ", ".join(f"{name} {list(np.shape(value))}" for name, value in sorted(outputs.items()))
    print(f"received {shapes}; wrote {', '.join(save_outputs(outputs, args.output))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
