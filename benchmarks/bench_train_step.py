"""Training-step throughput of ViewSeg: the fast path against the reference path, in one process.

One step is what ``training/train.py`` does per batch: ``to_model_batch`` (rays on the
device), ``ViewSeg.forward``, ``viewseg_losses``, backward, Adam step. Batch: the paper's
shape by default, 4 source views at 320x240, 1024 random target rays and 256 random rays
per source view (the project's paper configs, training/configs/hypersim.yaml), 64 coarse +
128 fine samples, batch size 1. Examples come from the real training dataset code
(``ViewSegDataset`` + ``collate``) over one procedural room held in memory; they are built
before timing (the data loader's workers build them during training).

Paths (each on its own copy of the same initial weights, with its own Adam):

- **fast**: the model's own training path: projected feature maps, the fused compositing
  kernel on CUDA, bf16 autocast on CUDA (``run.bf16``, the training default);
- **reference**: per-point sampling of the full feature maps (``projected_features=False``),
  unfused compositing (``VIEWSEG_COMPOSITING=reference``), float32.

Columns: target rays per second (median step), median and p90 step milliseconds after
warm-up, peak memory (CUDA ``max_memory_allocated``; CPU peak-RSS growth), FLOPs per step
by the 3x-forward rule (forward counted from the architecture as in bench_query.py:
encoder convolutions, field matmuls, compositing), achieved TFLOP/s and its share of the
measured matmul rate, and the speed-up of fast over reference. Rows are appended to the
"Training step" section of docs/benchmarks.md.

    python benchmarks/bench_train_step.py                  # paper model and batch, CUDA if present
    python benchmarks/bench_train_step.py --model small --size 80x60 --target-rays 384 \\
        --source-rays 32 --samples 32+32 --threads 1      # the synthetic_small training shape on CPU
    python benchmarks/bench_train_step.py --quick          # tiny model, seconds (tests)
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_query as bq  # noqa: E402  (also puts the repository root on sys.path)
from report import add_record_arguments, append_rows  # noqa: E402  (benchmarks/report.py)
from training.data import to_model_batch  # noqa: E402
from viewseg_core.data.dataset import DatasetConfig, ViewSegDataset, collate  # noqa: E402
from viewseg_core.data.pairs import PairEntry  # noqa: E402
from viewseg_core.data.source import CameraFrame  # noqa: E402
from viewseg_core.model.losses import LossConfig, viewseg_losses  # noqa: E402
from viewseg_core.model.viewseg import ViewSeg  # noqa: E402

SECTION = "## Training step (benchmarks/bench_train_step.py)"
TABLE_HEADER = ("| date | device | torch | load | model | source size | target + source rays | samples | path "
                "| target rays/s | median ms | p90 ms | n | peak MiB | GFLOP/step | TFLOP/s | % of matmul "
                "| floor ms | speed-up |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")


class MemoryScene:
    """A :class:`~viewseg_core.data.source.SceneSource` over View records held in memory."""

    def __init__(self, name: str, views: list) -> None:
        self.name, self.views = name, list(views)

    def __len__(self) -> int:
        return len(self.views)

    def camera(self, index: int) -> CameraFrame:
        v = self.views[index]
        return CameraFrame(v.view_id, v.K, v.c2w, v.height, v.width)

    def load_depth(self, index: int):
        return self.views[index].depth

    def load_view(self, index: int):
        return self.views[index]


def make_batches(scene: bq.QueryScene, count: int, target_rays: int, source_rays: int) -> list[dict]:
    """``count`` collated training batches (new random rays each) of one target and its sources."""
    views = [replace(v, view_id=f"s{i}") for i, v in enumerate(scene.source_views)]
    target = replace(scene.target_views[0], view_id="t")
    pair = PairEntry("bench", "t", [v.view_id for v in views])
    data = ViewSegDataset([MemoryScene("bench", views + [target])], [pair],
                          DatasetConfig(num_sources=len(views), image_size=None, target_rays=target_rays,
                                        source_rays=source_rays, resample_sources=False, seed=0))
    batches = []
    for i in range(count):
        data.set_epoch(i)
        batches.append(collate([data[0]]))
    return batches


@contextlib.contextmanager
def path_settings(model: ViewSeg, path: str, device: torch.device):
    """Reference: per-point features, unfused compositing, fp32. Fast: the model's own path,
    bf16 autocast on CUDA (as training/train.py)."""
    saved_env = os.environ.get("VIEWSEG_COMPOSITING")
    if path == "reference":
        model.set_projected_features(False)
        os.environ["VIEWSEG_COMPOSITING"] = "reference"
        amp = contextlib.nullcontext()
    else:
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    try:
        yield amp
    finally:
        if saved_env is None:
            os.environ.pop("VIEWSEG_COMPOSITING", None)
        else:
            os.environ["VIEWSEG_COMPOSITING"] = saved_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model and batch, 2 steps (for tests)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--model", default="paper", help="paper | small | a model or checkpoint file")
    parser.add_argument("--size", type=bq.parse_size, default=None, help="source/target image size WxH (320x240)")
    parser.add_argument("--target-rays", type=int, default=None, help="target rays per step (1024)")
    parser.add_argument("--source-rays", type=int, default=None, help="rays per source view (256)")
    parser.add_argument("--samples", default=None, help="NC+NF samples per ray (64+128)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per path (default 20; quick 2)")
    parser.add_argument("--ref-repeats", type=int, default=0, help="timed reference steps (default: --repeats)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; quick 1)")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    height, width = args.size or ((16, 24) if q else (240, 320))
    target_rays = args.target_rays or (64 if q else 1024)
    source_rays = args.source_rays if args.source_rays is not None else (8 if q else 256)
    nc, nf = (int(x) for x in (args.samples or ("8+8" if q else "64+128")).split("+"))
    repeats = args.repeats or (2 if q else 20)
    warmup = args.warmup if args.warmup is not None else (1 if q else 3)
    ref_repeats = args.ref_repeats or repeats
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    base, model_desc = bq.build_bench_model(args.model, q)
    base.config = replace(base.config, num_coarse=nc, num_fine=nf)
    base.renderer.config = replace(base.renderer.config, num_coarse=nc, num_fine=nf)
    if base.renderer.fine is None and nf > 0:
        parser.error(f"--samples {nc}+{nf}: the model has no fine field")
    scene = bq.synthetic_scene(height, width)
    batches = make_batches(scene, warmup + max(repeats, ref_repeats), target_rays, source_rays)
    V = scene.source_rgb.shape[1]
    name = bq.device_name(device)
    fast_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak_fast = bq.matmul_tflops(device, fast_dtype)
    peak_ref = peak_fast if fast_dtype == torch.float32 else bq.matmul_tflops(device, torch.float32)
    loss_cfg = LossConfig()
    print(f"device: {name}   torch {torch.__version__}   load {bq.load_average()}   model {model_desc}   "
          f"{V} sources {width}x{height}, {target_rays} target + {V}x{source_rays} source rays, {nc}+{nf} samples")

    # Forward FLOPs from the architecture: encoder convs (counted at this input shape) + field.
    with torch.no_grad():
        feats = base.encode_sources(scene.source_rgb)
    enc = bq.encoder_flops(base, scene.source_rgb)
    map_pixels = V * feats.shape[-2] * feats.shape[-1]
    rays = target_rays + V * source_rays

    results = {}
    for path in ("fast",) + (() if args.no_reference else ("reference",)):
        model = copy.deepcopy(base).to(device).train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        it = iter(batches)

        def step():
            batch = next(it)
            model_batch, targets = to_model_batch(batch, device, model.config)
            with amp:
                losses = viewseg_losses(model(model_batch), targets, loss_cfg)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()

        with path_settings(model, path, device) as amp, bq.PeakMemory(device) as mem:
            times = bq.time_runs(step, device, repeats if path == "fast" else ref_repeats, warmup=warmup)
        projected = path == "fast" and model.config.projected_features
        fwd = enc + bq.query_flops(model, V, map_pixels, rays, rays * nc, rays * (nc + nf) if nf else 0,
                                   projected=projected, composite_coarse=True)
        results[path] = (times, mem.mib, 3 * fwd / 1e9)
        del model, optimizer

    header = (f"{'path':<10} {'target rays/s':>13} {'median ms':>10} {'p90 ms':>9} {'n':>3} {'peak MiB':>9} "
              f"{'GFLOP':>8} {'TFLOP/s':>8} {'%mm':>5} {'floor ms':>9} {'speed-up':>8}")
    print(header)
    print("-" * len(header))
    today, load = _dt.date.today().isoformat(), bq.load_average()
    rows = []
    ref_med = statistics.median(results["reference"][0]) if "reference" in results else None
    for path, (times, mib, gflop) in results.items():
        med = statistics.median(times)
        peak = peak_fast if path == "fast" else peak_ref
        tflops = gflop / med
        speed = f"{ref_med / med:.1f}x" if ref_med and path == "fast" else "-"
        print(f"{path:<10} {target_rays / med * 1e3:>13.0f} {med:>10.1f} {bq.p90(times):>9.1f} {len(times):>3} "
              f"{bq._fmt(mib):>9} {gflop:>8.1f} {tflops:>8.3f} {100 * tflops / peak:>5.1f} {gflop / peak:>9.1f} "
              f"{speed:>8}")
        rows.append(f"| {today} | {name} | {torch.__version__} | {load} | {model_desc} | {width}x{height} "
                    f"| {target_rays} + {V}x{source_rays} | {nc}+{nf} | {path} | {target_rays / med * 1e3:.0f} "
                    f"| {med:.1f} | {bq.p90(times):.1f} | {len(times)} | {bq._fmt(mib)} | {gflop:.1f} "
                    f"| {tflops:.3f} | {100 * tflops / peak:.1f} | {gflop / peak:.1f} | {speed} |\n")
    if not args.no_record:
        append_rows(args.output, SECTION, TABLE_HEADER, rows)
        print(f"appended {len(rows)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
