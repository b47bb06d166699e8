"""The fused Triton field (issue 19) against the PyTorch field, at the paper preset's point counts.

CUDA: a paper-architecture field (256-d features, hidden 128, 3 blocks, 2+2 head blocks,
random weights with non-zero residual branches) and 4 source views whose projected maps are
80x60 (320x240 images at stride 4); a target camera's 320x240 = 76800 rays with the paper
preset's two passes, 64 samples (coarse) and 192 (fine: 64 + 128 re-evaluated together),
points stratified along the rays between 1 and 5 m from the target camera (on CPU at
1/64 of the rays: 11% of the points seen by no source, 2.6 views per point on average;
both paths evaluate every (point, view) pair, so the timings do not depend on it). For
each pass:

- ``pytorch bf16``: ``SemanticField.forward`` under ``torch.no_grad`` and bf16 autocast (the
  fast path's setting), 2048-ray chunks;
- ``pytorch fp32``: the same in float32 (``--fp32``);
- ``fused bf16``: :func:`fused_field_forward` on the whole pass in one launch, bf16
  ``tl.dot`` with float32 accumulation, at the best launch configuration of a sweep over
  ``block_points`` x ``num_warps`` (:data:`SWEEP`, on the first coarse pass; each
  configuration compiles once, ~10-60 s; ``--no-sweep``: the defaults);
- ``fused fp32``: IEEE float32 dots (``--fp32``; the parity mode, not a speed mode).

Columns: median / p90 ms over ``--repeats`` after warm-up; GFLOP = 2 x the field's
multiply-adds counted from the architecture (:func:`field_macs`, direction term per ray,
every view evaluated, ``prepare`` excluded: it is shared by both paths); achieved TFLOP/s;
its share of the device's measured dense bf16 matmul rate (8192^3); speed-up over
``pytorch bf16``; logit error of the path vs ``pytorch fp32`` on the pass's first 4096 rays
(max |difference| / max |logit|) and argmax agreement there. ``--record`` appends the rows to
docs/benchmarks.md, section "Fused field kernel".

CPU: prints that the benchmark needs CUDA, runs a tiny parity check of the kernel under the
triton interpreter (seconds) and exits 0 when it passes (1 when it does not).

    python benchmarks/bench_fused_field.py                    # CUDA: both passes, sweep, mean_var
    python benchmarks/bench_fused_field.py --pooling mean --fp32 --record
    python benchmarks/bench_fused_field.py --quick            # CUDA: 1/16 of the rays, no sweep
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import append_rows, load_avg  # noqa: E402

from viewseg_core.cameras import pixel_grid, pixels_to_rays  # noqa: E402
from viewseg_core.model.field import FieldConfig, ResBlock, SemanticField, SourceViews  # noqa: E402
from viewseg_core.model.fused_field import field_macs, fused_field_forward, fused_supported  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Fused field kernel (benchmarks/bench_fused_field.py)"
TABLE_HEADER = ("| date | device | torch | triton | pooling | pass | path | launch | median ms | p90 ms | GFLOP "
                "| TFLOP/s | % of bf16 matmul | x pytorch bf16 | logit err vs fp32 | argmax = fp32 |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
PASSES = (("coarse", 64), ("fine", 192))        # the paper preset: 64 + (64 + 128) points per ray
# (points per program, warps); a program runs points x 4 views rows through each layer.
SWEEP = [(16, 4), (16, 8), (32, 4), (32, 8), (64, 8)]
TORCH_CHUNK_RAYS = 2048
CHECK_RAYS = 4096


def look_at(position, target=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """c2w [4, 4] of an OpenCV camera at ``position`` looking at ``target`` (image-down ~ +y)."""
    pos, tgt = torch.as_tensor(position, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)
    z = torch.nn.functional.normalize(tgt - pos, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), z), dim=0)
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.stack([x, torch.linalg.cross(z, x), z], dim=1)
    c2w[:3, 3] = pos
    return c2w


def build_field(feature_dim: int, hidden: int, pooling: str, device, seed: int = 0) -> SemanticField:
    torch.manual_seed(seed)
    f = SemanticField(feature_dim, FieldConfig(hidden_dim=hidden, view_pooling=pooling))
    with torch.no_grad():
        for m in f.modules():
            if isinstance(m, ResBlock):
                m.fc1.weight.normal_(0, 0.5 / hidden ** 0.5)
                m.fc1.bias.normal_(0, 0.05)
        if f.pool_proj is not None:
            f.pool_proj.weight.normal_(0, 0.5 / hidden ** 0.5)
    return f.to(device).eval()


def build_scene(height: int, width: int, feature_dim: int, views: int, samples: int, rays_fraction: float,
                device, seed: int = 1):
    """Sources [1, V] around the origin, and points [1, R, S, 3] / directions [1, R, 3] of a
    target camera's rays (every ``1/rays_fraction``-th pixel when < 1)."""
    g = torch.Generator().manual_seed(seed)
    focal = 0.9 * width
    K = torch.tensor([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])
    positions = [(-1.2, -0.2, -2.8), (1.4, 0.1, -2.6), (-2.4, 0.3, -1.0), (2.2, -0.4, -1.5),
                 (0.0, -1.0, -3.0), (0.5, 0.8, -2.9)][:views]
    c2w = torch.stack([look_at(p) for p in positions])[None]
    feats = torch.randn(1, views, feature_dim, height // 4, width // 4, generator=g)
    src = SourceViews(feats.to(device), K.expand(1, views, 3, 3).clone().to(device), c2w.to(device), height, width)
    uv = pixel_grid(height, width)
    if rays_fraction < 1:
        uv = uv[:: int(round(1 / rays_fraction))]
    origins, dirs = pixels_to_rays(K, look_at((0.3, 0.1, -3.2)), uv)           # [R, 3]
    t = 1.0 + 4.0 * (torch.arange(samples) + torch.rand(uv.shape[0], samples, generator=g)) / samples
    pts = origins[:, None] + t[..., None] * dirs[:, None]                       # [R, S, 3]
    return src, pts[None].to(device), dirs[None].to(device)


def sync() -> None:
    torch.cuda.synchronize()


def time_ms(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def p90(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]


def bf16_matmul_tflops() -> float:
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return 2 * n ** 3 / (min(time_ms(lambda: a @ b, 10, 2)) * 1e-3) / 1e12


def torch_field(field, pts, dirs, prepared, amp: bool):
    """The PyTorch field over ray chunks; returns logits [1, R, S, C] (float32)."""
    outs = []
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        for s in range(0, pts.shape[1], TORCH_CHUNK_RAYS):
            outs.append(field(pts[:, s:s + TORCH_CHUNK_RAYS], dirs[:, s:s + TORCH_CHUNK_RAYS], prepared).logits)
    return torch.cat(outs, dim=1)


def logit_check(logits: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    err = float((logits.float() - ref.float()).abs().max() / ref.abs().max())
    return err, float((logits.argmax(-1) == ref.argmax(-1)).float().mean())


def cpu_check() -> int:
    """The kernel under the triton interpreter on a tiny case (no timing: the interpreter is
    orders of magnitude slower than any real path)."""
    print("bench_fused_field: needs CUDA for timings; running a tiny triton-interpreter parity check instead.")
    torch.set_num_threads(1)
    field = build_field(16, 32, "mean_var", "cpu")
    src, pts, dirs = build_scene(24, 32, 16, 2, 8, 1 / 24, "cpu")  # 32 rays x 8 samples x 2 views
    ok, why = fused_supported(field, "cpu", interpret=True)
    if not ok:
        print(f"  fused kernel unsupported here: {why}")
        return 1
    with torch.no_grad():
        prepared = field.prepare(src)
        ref = field(pts, dirs, prepared)
        t0 = time.perf_counter()
        out = fused_field_forward(field, pts, dirs, prepared, interpret=True)
        dt = time.perf_counter() - t0
    err, agree = logit_check(out.logits, ref.logits)
    same_vis = bool(torch.equal(out.num_visible, ref.num_visible))
    dens = float((out.density - ref.density).abs().max())
    print(f"  interpreter fp32, {pts.shape[1]} rays x {pts.shape[2]} samples x {src.num_views} views, hidden 32: "
          f"logit err {err:.2e} (of max |logit|), argmax equal {100 * agree:.1f}%, density err {dens:.2e}, "
          f"visible counts equal: {same_vis}; {dt:.1f} s")
    passed = err <= 1e-4 and agree >= 0.99 and same_vis and dens <= 1e-4
    print("  parity:", "ok" if passed else "FAILED")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pooling", default="mean_var", choices=["mean", "mean_var", "both"])
    ap.add_argument("--size", default="320x240", help="target/source image WxH")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fp32", action="store_true", help="also time the fp32 paths (fused fp32 = IEEE dots)")
    ap.add_argument("--no-sweep", action="store_true", help="default launch configuration only")
    ap.add_argument("--quick", action="store_true", help="1/16 of the rays, no sweep, 3 repeats")
    ap.add_argument("--record", action="store_true", help="append rows to docs/benchmarks.md")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        return cpu_check()

    import triton

    width, height = (int(x) for x in args.size.lower().split("x"))
    fraction = 1 / 16 if args.quick else 1.0
    repeats = 3 if args.quick else args.repeats
    poolings = ["mean", "mean_var"] if args.pooling == "both" else [args.pooling]
    dev_name = torch.cuda.get_device_name()
    peak = bf16_matmul_tflops()
    print(f"{dev_name}  torch {torch.__version__}  triton {triton.__version__}  bf16 matmul {peak:.1f} TFLOP/s  "
          f"{width}x{height} x {args.views} views")
    date = _dt.date.today().isoformat()
    rows, results = [], []
    swept = False
    best = None  # swept once (the first pooling's coarse pass), then reused
    for pooling in poolings:
        field = build_field(256, 128, pooling, "cuda")
        ok, why = fused_supported(field, "cuda")
        if not ok:
            print(f"fused kernel unsupported: {why}")
            return 1
        for name, samples in PASSES:
            src, pts, dirs = build_scene(height, width, 256, args.views, samples, fraction, "cuda")
            R = pts.shape[1]
            with torch.no_grad():
                prepared = field.prepare(src)
            macs = field_macs(field, args.views, R * samples, R)
            gflop = 2 * macs / 1e9
            label = f"{name}: {R} x {samples} x {args.views}"
            ref32 = torch_field(field, pts[:, :CHECK_RAYS], dirs[:, :CHECK_RAYS], prepared, amp=False)

            def fused(precision, bp=None, nw=None):
                with torch.no_grad():
                    return fused_field_forward(field, pts, dirs, prepared, precision=precision,
                                               block_points=bp, num_warps=nw)

            if best is None and not swept and not (args.no_sweep or args.quick):
                swept = True
                timings = []
                for bp, nw in SWEEP:
                    try:
                        ms = min(time_ms(lambda: fused("bf16", bp, nw), 2, 1))
                    except Exception as exc:  # noqa: BLE001 - a config that fails to compile/launch
                        print(f"  sweep {label} block {bp} warps {nw}: failed: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:120]}")
                        continue
                    print(f"  sweep {label} block {bp} warps {nw}: {ms:.2f} ms")
                    timings.append((ms, bp, nw))
                if timings:
                    best = min(timings)[1:]
            cases = [("pytorch bf16", "2048-ray chunks", lambda: torch_field(field, pts, dirs, prepared, True))]
            if args.fp32:
                cases.append(("pytorch fp32", "2048-ray chunks",
                              lambda: torch_field(field, pts, dirs, prepared, False)))
            bp, nw = best if best else (None, None)
            launch = f"block {bp}, warps {nw}" if best else "defaults"
            cases.append(("fused bf16", launch, lambda: fused("bf16", bp, nw).logits))
            if args.fp32:
                cases.append(("fused fp32", launch, lambda: fused("fp32", bp, nw).logits))
            base = None
            for path, launch_desc, fn in cases:
                logits = fn()
                err, agree = logit_check(logits[:, :CHECK_RAYS], ref32)
                del logits
                times = time_ms(fn, repeats, 1)
                med = statistics.median(times)
                tflops = gflop / med
                base = med if path == "pytorch bf16" else base
                speed = f"{base / med:.2f}x" if base else "-"
                print(f"  {pooling:8s} {label:28s} {path:13s} {launch_desc:18s} {med:9.2f} ms (p90 {p90(times):.2f})"
                      f"  {gflop:8.1f} GFLOP {tflops:7.2f} TFLOP/s {100 * tflops / peak:5.1f}% of matmul  {speed:>7s}"
                      f"  err {err:.1e} argmax {100 * agree:.2f}%")
                results.append(dict(device=dev_name, pooling=pooling, pass_=name, rays=R, samples=samples,
                                    views=args.views, path=path, launch=launch_desc, median_ms=med,
                                    p90_ms=p90(times), gflop=gflop, tflops=tflops, matmul_tflops=peak,
                                    speedup=base / med if base else None, logit_err=err, argmax=agree))
                rows.append(f"| {date} | {dev_name} | {torch.__version__} | {triton.__version__} | {pooling} | {label} "
                            f"| {path} | {launch_desc} | {med:.2f} | {p90(times):.2f} | {gflop:.1f} | {tflops:.2f} "
                            f"| {100 * tflops / peak:.1f} | {speed} | {err:.1e} | {100 * agree:.2f}% |\n")
            pts = dirs = prepared = None  # free the pass's tensors before the next one
            torch.cuda.empty_cache()
    print(f"load average {load_avg():.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.record and not args.quick:
        append_rows(DOCS, SECTION, TABLE_HEADER, rows)
        print(f"recorded {len(rows)} rows in {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
