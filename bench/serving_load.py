"""The served model under load: latency percentiles and peak memory, engine server vs torch server.

    python bench/serving_load.py                                   # random generator, demo architecture
    python bench/serving_load.py --model models:/esrgan-x4@champion  # the registered champion's weights
    python bench/serving_load.py --image localhost/esrgan-pipeline:0.1.0-serve   # and the serving image
    python bench/serving_load.py --requests 16 --concurrency 4 --size 256 --tiles 0,128

For each tile setting the generator is logged with :func:`pipeline.registry.packaging.log_generator_model`
(the pyfunc the register step deploys, ``model.onnx`` included; only its ``tile`` differs) into a
scratch registry and served by real ``mlflow models serve --env-manager local`` processes, one per
``--servers`` entry, all up at once: ``engine`` (the fastest engine installed, what the pyfunc
picks by default) and ``torch`` (``ESRGAN_ENGINE=torch ESRGAN_PRECISION=fp32``: the server before
issue 23), plus with ``--image`` the torch-free serving image under podman (``--torch-image``: a
project image serving with PyTorch, started and asked once, for start-up and idle memory). Each gets ``--rounds``
rounds of ``--requests`` POSTs of one ``--size`` x ``--size`` PNG from ``--concurrency`` client
threads, the servers taking turns in rotated order (load drift hits all alike). Reported per
server: p50/p95/max latency, throughput, the server's peak resident memory (its whole process tree,
sampled every 20 ms; idle baseline alongside), start-up to the first 200 on ``/ping``, the engine
it reported, the load average, and the HTTP status of a set of bad requests, which must be 4xx (a
500 means the server blamed itself for the client's mistake).

Not a test: figures depend on the machine and its load. Results: a table on stdout and
``bench/results/serving_load.json``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "serving_load.json"
MIB = 1024.0 * 1024.0


def png_b64(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_image(size: int) -> np.ndarray:
    """A photo crop (skimage's astronaut, offline) so the PNG codec does realistic work."""
    from skimage import data

    img = data.astronaut()
    reps = -(-size // min(img.shape[:2]))
    return np.tile(img, (reps, reps, 1))[:size, :size].copy()


def post(url: str, body: bytes, content_type: str = "application/json", timeout: float = 600) -> tuple[int, float]:
    req = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": content_type})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return status, time.perf_counter() - start


def request(image_b64: str, column: str = "image") -> bytes:
    return json.dumps({"dataframe_split": {"columns": [column], "data": [[image_b64]]}}).encode()


BAD_REQUESTS: dict[str, tuple[bytes, str]] = {
    "not base64": (request("not base64 at all!"), "application/json"),
    "not an image": (request(base64.b64encode(b"hello").decode()), "application/json"),
    "wrong column": (request(base64.b64encode(b"x").decode(), column="picture"), "application/json"),
    "empty string": (request(""), "application/json"),
    "malformed JSON": (b'{"dataframe_split": ', "application/json"),
    "no body": (b"", "application/json"),
    "wrong content type": (b"image bytes", "image/png"),
}


class TreeMemory:
    """Peak resident memory of a process and its children, sampled in a thread."""

    def __init__(self, pid: int, period: float = 0.02) -> None:
        self.root, self.period, self.peak = psutil.Process(pid), period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        total = 0
        for proc in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.period)

    def __enter__(self) -> TreeMemory:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


#: The servers compared (``--servers``): name -> environment of ``mlflow models serve``. ``torch`` is the
#: server before issue 23 (PyTorch fp32 on the generator); ``engine`` picks the fastest engine installed.
SERVERS: dict[str, dict[str, str]] = {
    "engine": {"ESRGAN_ENGINE": "auto", "ESRGAN_PRECISION": "auto"},
    "torch": {"ESRGAN_ENGINE": "torch", "ESRGAN_PRECISION": "fp32"},
    "onnxruntime": {"ESRGAN_ENGINE": "onnxruntime", "ESRGAN_PRECISION": "auto"},
    "openvino-fp32": {"ESRGAN_ENGINE": "openvino", "ESRGAN_PRECISION": "fp32"},
}


@contextlib.contextmanager
def serve(
    model_uri: str, tracking_uri: str, log: Path, extra_env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``mlflow models serve`` in its own process group; stopped by its process group id."""
    from pipeline.processes import free_port, mlflow_serve_command, server_process  # after ROOT is on sys.path

    port = free_port()
    cmd = [*mlflow_serve_command(Path(sys.executable).with_name("mlflow"), model_uri, port), "--timeout", "600"]
    url = f"http://127.0.0.1:{port}"
    bin_dir = str(Path(sys.executable).parent)  # `mlflow models serve` runs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **extra_env}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    with server_process(cmd, f"{url}/ping", log, env=env, timeout=300) as proc:
        yield url, proc


@contextlib.contextmanager
def serve_image(image: str, model_dir: Path, log: Path, extra_env: dict[str, str]) -> Iterator[tuple[str, int, float]]:
    """The serving image on the host network, ``model_dir`` at ``/mnt/models``; yields its URL, the
    pid of the server in it (for memory) and the cold start (container start to the first 200 on /ping)."""
    from pipeline.processes import free_port, wait_http

    port = free_port()
    name = f"esrgan-bench-{os.getpid()}-{port}"
    cmd = ["podman", "run", "--rm", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    cmd += [arg for k, v in extra_env.items() for arg in ("--env", f"{k}={v}")]
    cmd += ["--volume", f"{model_dir}:/mnt/models:ro", image]
    cmd += ["mlflow", "models", "serve", "-m", "/mnt/models", "--env-manager", "local", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--timeout", "600"]
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"{url}/ping", proc, log, timeout=300)
        cold = time.perf_counter() - start
        pid = int(
            subprocess.run(
                ["podman", "inspect", "--format", "{{.State.Pid}}", name], capture_output=True, text=True, check=True
            ).stdout
        )
        yield url, pid, cold
    finally:
        subprocess.run(["podman", "stop", "--time", "10", name], capture_output=True)
        proc.wait(timeout=60)


def generator_file(model: str | None, workdir: Path) -> tuple[Path, str]:
    """The weights to serve: a file, a registry URI's generator, or random weights of params.yaml's architecture."""
    from esrgan.models import RRDBNet, load_generator, save_generator

    if model and model.startswith(("models:/", "runs:/")):
        from pipeline.registry.packaging import load_registered_generator

        net, label = load_registered_generator(model), model
    elif model:
        net, label = load_generator(model), model
    else:
        import torch

        arch = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]
        torch.manual_seed(0)
        net = RRDBNet(**arch)
        label = f"random RRDBNet {arch}"
    path = workdir / "generator.safetensors"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        save_generator(net, path)
    return path, label


def register(generator: Path, tile: int, workdir: Path) -> tuple[str, str]:
    """Log and register the generator as the register step does (``model.onnx`` included); its URI."""
    import mlflow

    from pipeline.registry.packaging import log_generator_model

    tracking = f"sqlite:///{workdir / 'bench.db'}"
    mlflow.set_tracking_uri(tracking)
    exp = mlflow.get_experiment_by_name("serving-bench")
    exp_id = exp.experiment_id if exp else mlflow.create_experiment("serving-bench", (workdir / "art").as_uri())
    with mlflow.start_run(experiment_id=exp_id):
        info = log_generator_model(generator, registered_model_name="serving-bench", tile=tile)
    return f"models:/serving-bench/{info.registered_model_version}", tracking


def load(url: str, pid: int, body: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """``--requests`` POSTs of ``body`` from ``--concurrency`` threads: latencies, peak memory of ``pid``'s tree."""
    mem = TreeMemory(pid)
    idle = mem.current()
    with mem, ThreadPoolExecutor(args.concurrency) as pool:
        start = time.perf_counter()
        results = list(pool.map(lambda _: post(url, body), range(args.requests)))
        wall = time.perf_counter() - start
    return {
        "latencies": [t for _, t in results],
        "statuses": sorted({s for s, _ in results}),
        "wall": wall,
        "idle": idle,
        "peak": mem.peak,
    }


def summary(name: str, tile: int, rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    lat = sorted(t for r in rounds for t in r["latencies"])
    return {
        "server": name,
        "tile": tile,
        "requests": len(lat),
        "concurrency": args.concurrency,
        "size": args.size,
        "statuses": sorted({s for r in rounds for s in r["statuses"]}),
        "p50_s": statistics.median(lat),
        "p95_s": lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))],
        "max_s": lat[-1],
        "throughput_img_s": len(lat) / sum(r["wall"] for r in rounds),
        "idle_rss_mib": min(r["idle"] for r in rounds) / MIB,
        "peak_rss_mib": max(r["peak"] for r in rounds) / MIB,
    }


def bench_tile(generator: Path, tile: int, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """Every server up at once (idle ones cost no CPU), loaded in turn, ``--rounds`` times in rotated
    order so that a change of machine load hits them alike."""
    import mlflow

    uri, tracking = register(generator, tile, workdir)
    body = request(png_b64(test_image(args.size)))
    names = args.servers.split(",")
    with contextlib.ExitStack() as stack:
        targets: dict[str, tuple[str, int]] = {}
        colds: dict[str, float] = {}
        for name in names:
            start = time.perf_counter()
            url, proc = stack.enter_context(serve(uri, tracking, workdir / f"serve_{name}_{tile}.log", SERVERS[name]))
            colds[name] = time.perf_counter() - start
            targets[name] = (url, proc.pid)
        images = {"image": (args.image, SERVERS["engine"]), "torch-image": (args.torch_image, SERVERS["torch"])}
        images = {k: v for k, v in images.items() if v[0]}
        if images:
            model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(workdir / "model")))
            for path in [model_dir, *model_dir.rglob("*")]:  # readable by the images' user
                path.chmod(0o755 if path.is_dir() else 0o644)
        for name, (image, env) in images.items():
            log = workdir / f"serve_{name}_{tile}.log"
            url, pid, cold = stack.enter_context(serve_image(image, model_dir, log, env))
            targets[name], colds[name] = (url, pid), cold
        first: dict[str, float] = {}
        for name, (url, _) in targets.items():
            status, first[name] = post(url, body)  # warm-up: the first request pays lazy initialisation
            assert status == 200, f"{name}: warm-up request answered {status}"
        # The torch image only starts and answers once: its requests cost what the host torch server's do.
        order = [name for name in targets if name != "torch-image"]
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
        for i in range(args.rounds):
            for name in order[i % len(order) :] + order[: i % len(order)]:
                rounds[name].append(load(*targets[name], body, args))
        bad = {
            name: {k: post(url, d, c)[0] for k, (d, c) in BAD_REQUESTS.items()} for name, (url, _) in targets.items()
        }
        engines = {name: engine_line(workdir / f"serve_{name}_{tile}.log") for name in targets}
        idle = {name: TreeMemory(pid).current() / MIB for name, (_, pid) in targets.items()}
    rows = [summary(name, tile, rounds[name], args) for name in order]
    if "torch-image" in targets:
        nan = float("nan")
        rows.append(
            {"server": "torch-image", "tile": tile, "requests": 1, "statuses": [200], "p50_s": first["torch-image"]}
            | {"p95_s": nan, "max_s": first["torch-image"], "throughput_img_s": nan, "peak_rss_mib": nan}
            | {"idle_rss_mib": idle["torch-image"]}
        )
    for row in rows:
        name = row["server"]
        row.update(engine=engines[name], bad_requests=bad[name], start_s=colds[name], first_request_s=first[name])
    return rows


def engine_line(log: Path) -> str:
    """What the server said it serves with (``serving with openvino bf16``), from its log."""
    lines = [line for line in log.read_text().splitlines() if "serving with " in line]
    return lines[-1].split("serving with ", 1)[1].strip() if lines else "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="generator file or models:/ URI (default: random weights, params.yaml architecture)")
    p.add_argument("--requests", type=int, default=6, help="requests per round and server")
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2, help="rounds of --requests per server, interleaved")
    p.add_argument("--size", type=int, default=256, help="request image edge in pixels")
    p.add_argument("--tiles", default="256", help="comma-separated served tile edges; 0 = whole image")
    p.add_argument("--servers", default="engine,torch", help=f"comma-separated, of {', '.join(SERVERS)}")
    p.add_argument("--image", help="also the serving image (./run image serve), under podman on the host network")
    p.add_argument(
        "--torch-image", help="also a project image (./run image cpu or cuda) with PyTorch: start-up and one request"
    )
    args = p.parse_args()
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        p.error(f"--servers: unknown {sorted(unknown)}; expected some of {', '.join(SERVERS)}")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        generator, label = generator_file(args.model, workdir)
        rows = [row for t in args.tiles.split(",") for row in bench_tile(generator, int(t), args, workdir)]
    load_after = os.getloadavg()
    print(
        f"model: {label}; {args.rounds} x {args.requests} requests of {args.size}x{args.size}, {args.concurrency} "
        f"concurrent; {os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(
        f"{'server':<14} {'engine':<18} {'tile':>5} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'img/s':>6} "
        f"{'idle MiB':>9} {'peak MiB':>9} {'start s':>8} {'first s':>8}  statuses"
    )
    for r in rows:
        print(
            f"{r['server']:<14} {r['engine']:<18} {r['tile']:>5} {r['p50_s']:7.2f} {r['p95_s']:7.2f} {r['max_s']:7.2f} "
            f"{r['throughput_img_s']:6.2f} {r['idle_rss_mib']:9.0f} {r['peak_rss_mib']:9.0f} {r['start_s']:8.1f} "
            f"{r['first_request_s']:8.1f}  "
            f"{r['statuses']}"
        )
    print("bad requests (status per case, must be 4xx):")
    for r in rows:
        print(f"  {r['server']} tile {r['tile']}: " + ", ".join(f"{k} {v}" for k, v in r["bad_requests"].items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"model": label, "rows": rows, "cpus": os.cpu_count(), "load": [load_before[0], load_after[0]]}, indent=2
        )
    )
    server_errors = [k for r in rows for k, v in r["bad_requests"].items() if v >= 500]
    if server_errors:
        print(f"FAIL: 5xx for bad requests: {sorted(set(server_errors))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
