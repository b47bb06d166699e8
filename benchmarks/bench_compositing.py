"""Time the fused CUDA compositing kernel against the PyTorch reference.

Cases are rays x samples x channels at training size (a batch of random rays, coarse 64
and merged 192 samples) and query size (a 240x320 image, 192 samples); channels = 37 class
logits + 3 RGB. Each case is timed forward only and forward + backward; the table prints
milliseconds (median of the repeats) and the reference/kernel ratio. On a machine without
CUDA only the reference runs. A dated row per case, with the device name, is appended to
the "Fused compositing" section of docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_compositing.py            # full sizes
    python benchmarks/bench_compositing.py --quick    # small sizes, a few seconds on CPU
"""
from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

from viewseg_core.volrend import composite_fused, composite_reference  # noqa: E402
from report import add_record_arguments, append_rows, cpu_name  # noqa: E402  (benchmarks/report.py)

NUM_CHANNELS = 37 + 3
FULL_CASES = [("train coarse", 4096, 64), ("train fine", 4096, 192), ("query 240x320", 76800, 192)]
QUICK_CASES = [("train coarse", 1024, 64), ("query (quick)", 4096, 192)]
SECTION = "## Fused compositing kernel (viewseg_core/volrend.py, viewseg_core/cuda)"
TABLE_HEADER = ("| date | device | torch | dtype | case (rays x samples x channels) | pass "
                "| reference ms | kernel ms | speedup |\n"
                "|---|---|---|---|---|---|---|---|---|\n")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {cpu_name()} ({torch.get_num_threads()} threads)"


def make_inputs(rays: int, samples: int, dtype: torch.dtype, device: torch.device):
    g = torch.Generator(device=device).manual_seed(0)
    sigma = torch.rand(rays, samples, generator=g, device=device, dtype=dtype) * 2
    t = torch.sort(torch.rand(rays, samples, generator=g, device=device, dtype=dtype) * 19.9 + 0.1, -1).values
    values = torch.randn(rays, samples, NUM_CHANNELS, generator=g, device=device, dtype=dtype)
    far = torch.full((rays,), 20.0, device=device, dtype=dtype)
    return sigma, t, values, far


def time_ms(fn, device: torch.device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_case(rays: int, samples: int, dtype, device, repeats: int, use_kernel: bool):
    sigma, t, values, far = make_inputs(rays, samples, dtype, device)
    s_req, v_req = sigma.clone().requires_grad_(), values.clone().requires_grad_()

    def forward(run):
        def f():
            with torch.no_grad():
                run(sigma, t, values, far)
        return f

    def forward_backward(run):
        def f():
            out, weights, opacity, dist = run(s_req, t, v_req, far)
            (out.sum() + weights.sum() + opacity.sum() + dist.sum()).backward()
            s_req.grad = v_req.grad = None
        return f

    kernel = lambda *a: composite_fused(*a, backend="cuda")  # noqa: E731
    result = {}
    for name, make in (("forward", forward), ("forward+backward", forward_backward)):
        ref = time_ms(make(composite_reference), device, repeats)
        ker = time_ms(make(kernel), device, repeats) if use_kernel else None
        result[name] = (ref, ker)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU-friendly)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (1 gives steadier numbers on a shared machine)")
    add_record_arguments(parser)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    use_kernel = device.type == "cuda"
    cases = QUICK_CASES if args.quick or (device.type != "cuda" and not args.device) else FULL_CASES
    repeats = args.repeats or (3 if args.quick or device.type != "cuda" else 20)
    name = device_name(device)
    print(f"device: {name}   torch {torch.__version__}   dtype {args.dtype}   "
          f"{'kernel vs reference' if use_kernel else 'reference only (no CUDA)'}")
    header = f"{'case':<34} {'pass':<17} {'reference ms':>13} {'kernel ms':>10} {'speedup':>8}"
    print(header)
    print("-" * len(header))
    today = _dt.date.today().isoformat()
    rows = []
    for label, rays, samples in cases:
        case = f"{label}: {rays} x {samples} x {NUM_CHANNELS}"
        for pass_name, (ref, ker) in bench_case(rays, samples, dtype, device, repeats, use_kernel).items():
            ker_s = f"{ker:.3f}" if ker is not None else "-"
            ratio = f"{ref / ker:.1f}x" if ker else "-"
            print(f"{case:<34} {pass_name:<17} {ref:>13.3f} {ker_s:>10} {ratio:>8}")
            rows.append(f"| {today} | {name} | {torch.__version__} | {args.dtype} | {case} | {pass_name} "
                        f"| {ref:.3f} | {ker_s} | {ratio} |\n")
    if not args.no_record:
        append_rows(args.output, SECTION, TABLE_HEADER, rows)
        print(f"appended {len(rows)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
