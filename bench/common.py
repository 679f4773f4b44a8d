"""Shared helpers of the benchmark scripts: timing, memory high-water marks, machine description.

Timing is interleaved: every repetition runs each implementation once, in a rotated order, so
that load from other processes on a shared machine hits all of them alike; we report medians and
ratios from the same run.

Peak memory on CPU is the resident-set high-water mark (``VmHWM``) of a *fresh child process*
per implementation and configuration, minus its resident set (``VmRSS``) just before the measured
work (after the weights and inputs exist), so peaks of different implementations never mix and
torch's allocations outside Python's heap are counted. On CUDA it is
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
MIB = 1024.0 * 1024.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: dict[str, Callable[[], object]], reps: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of every function, ``reps`` times each, interleaved in rotated order."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mib() -> float:
    """Current resident set size of this process (Linux)."""
    return _proc_status_kib("VmRSS") / 1024.0


def rss_peak_mib() -> float:
    """Resident set high-water mark of this process since it started (Linux)."""
    return _proc_status_kib("VmHWM") / 1024.0


def measure_peak(work: Callable[[], object], device: torch.device) -> dict[str, float]:
    """Run ``work`` once and return its peak memory: CUDA allocator peak or CPU RSS high-water delta.

    On CPU call this in a fresh process (see :func:`run_child`): the high-water mark covers the
    whole process, so anything that ran before would leak into it.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        work()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_delta_mib": (peak - base) / MIB, "peak_abs_mib": peak / MIB}
    base = rss_mib()
    work()
    peak = rss_peak_mib()
    return {"peak_delta_mib": peak - base, "peak_abs_mib": peak, "baseline_mib": base}


def run_child(script: Path, args: Sequence[str], timeout: float = 900.0) -> dict[str, Any]:
    """Run ``python script --child args...`` and parse the JSON object on its last stdout line."""
    cmd = [sys.executable, str(script), "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"child exited {proc.returncode}: {tail[0]}"}
    return json.loads(lines[-1])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            info = fh.read()
    except OSError:
        return platform.processor() or "unknown"
    fields = {}
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (
        f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model "
        f"{fields.get('model', '?')}; {' '.join(isa)})"
    )


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    import numpy

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": str(device),
        "loadavg_start": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def matmul_peak_gflops(
    device: torch.device, sizes: Sequence[int] = (2048, 4096), reps: int = 5, dtype: torch.dtype = torch.float32
) -> dict[str, Any]:
    """Dense ``torch.matmul`` throughput on square ``dtype`` matrices: the best size's median GFLOP/s."""
    results = {}
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        times = time_interleaved({"mm": lambda a=a, b=b: torch.matmul(a, b)}, reps=reps, warmup=1, device=device)
        results[n] = 2.0 * n**3 / median(times["mm"]) / 1e9
    best = max(results, key=lambda k: results[k])
    return {"gflops": results[best], "size": best, "by_size": {str(k): v for k, v in results.items()}}


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data["machine"]["loadavg_end"] = os.getloadavg()
    path = RESULTS_DIR / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
