"""benchmarks/bench_query.py and bench_train_step.py cannot rot: their --quick runs work end to
end and land rows in their own tables, and the FLOP counter they report agrees with torch's
FlopCounterMode on a real render (reference path and fast path, with and without skipping)."""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from viewseg_core.model.fast import PRESETS, cpu_has_native_bf16

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def table_rows(text: str, section: str) -> list[list[str]]:
    body = text[text.index(section) + len(section):]
    body = body[:body.find("\n## ")] if "\n## " in body else body
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in body.splitlines() if ln.startswith("| 20")]


def run_quick(script: str, page: Path, *extra: str, env: dict | None = None) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    env.pop("VIEWSEG_FIELD", None)
    done = subprocess.run([sys.executable, str(BENCH / script), "--quick", "--threads", "1", "--device", "cpu",
                           "--output", str(page), *extra], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def header_of(module) -> list[str]:
    """Column names of a bench module's recorded table."""
    return [c.strip() for c in module.TABLE_HEADER.splitlines()[0].strip("|").split("|")]


def query_rows(bq, tmp_path: Path, *extra: str) -> list[dict[str, str]]:
    """``bench_query.py --quick *extra`` into a fresh page: its recorded rows, by column name."""
    page = tmp_path / "benchmarks.md"
    run_quick("bench_query.py", page, *extra)
    return [dict(zip(header_of(bq), row)) for row in table_rows(page.read_text(), bq.SECTION)]


def usage_error(*extra: str) -> str:
    """``bench_query.py --quick *extra`` must stop at argument parsing: exit 2, no traceback; its stderr."""
    bad = subprocess.run([sys.executable, str(BENCH / "bench_query.py"), "--quick", *extra],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    return bad.stderr


def test_quick_runs_record_their_tables(tmp_path, load_benchmark):
    bq, bt = load_benchmark("bench_query"), load_benchmark("bench_train_step")
    page = tmp_path / "benchmarks.md"
    page.write_text("# viewseg benchmarks\n\n## Someone else's section\n\n| a |\n")
    out = run_quick("bench_query.py", page)
    assert "reference" in out and "fast" in out and "encode 4 sources" in out
    out = run_quick("bench_train_step.py", page)
    assert "target rays/s" in out
    text = page.read_text()
    assert text.startswith("# viewseg benchmarks\n\n## Someone else's section\n\n| a |\n")
    query = table_rows(text, bq.SECTION)
    header = header_of(bq)
    assert len(query) == 4 and all(len(r) == len(header) for r in query)   # 2 fast, 1 reference, encoder
    fast_path = ("fast bf16" if cpu_has_native_bf16() else "fast fp32") + " +epi"  # amp auto, fused epilogues
    assert [r[header.index("path")] for r in query[:3]] == [fast_path, "reference", fast_path]
    assert query[0][header.index("speed-up (same samples)")].endswith("x")
    train = table_rows(text, bt.SECTION)
    assert [r[8] for r in train] == ["fast", "reference"]
    assert float(train[0][9]) > 0                                             # target rays/s


def test_epilogue_rows_on_and_off(tmp_path, load_benchmark):
    """--epilogues on,off: two fast rows per preset, named for what ran, with one reference."""
    bq = load_benchmark("bench_query")
    rows = query_rows(bq, tmp_path, "--epilogues", "on,off", "--no-encoder", "--presets", "2+2:off")
    assert [r["path"] for r in rows] == ["fast fp32 +epi", "fast fp32", "reference"]
    assert rows[0]["points/ray"] == rows[1]["points/ray"]
    with pytest.raises(ValueError, match="--epilogues takes on, off or on,off"):
        bq.parse_epilogues("maybe")
    assert bq.parse_epilogues("off,on") == [False, True]
    assert "--epilogues takes on, off or on,off, got 'maybe'" in usage_error("--epilogues", "maybe")
    assert not bq.epilogues_fuse(torch.device("cpu"), "fp32", False)
    assert not bq.epilogues_fuse(torch.device("cpu"), "fp16", True)



@pytest.mark.parametrize("spec, named", [("fast,8s+4b", "'8s+4b'"), ("rgbd:fp8", "'rgbd:fp8'"), ("2+0@1.5", "'2+0@1.5'")])
def test_a_bad_preset_is_a_usage_error_naming_it(spec, named, load_benchmark):
    """--presets is checked before anything loads: exit 2, one line naming the bad spec (a
    missing count, an unknown precision, a skip weight out of range), no traceback."""
    bq = load_benchmark("bench_query")
    assert bq.presets_arg(" rgbd , 8s+4b+4/free/unexplained:off") == " rgbd , 8s+4b+4/free/unexplained:off"
    assert bq.parse_preset("8s+4b+4@1e-3/free/unexplained:off") == dataclasses.replace(
        PRESETS["rgbd_fine"], name="", amp="off")
    assert f"argument --presets: preset {named}" in usage_error("--presets", spec)


def test_kept_map_rows_beside_the_per_query_rows(tmp_path, load_benchmark):
    """--prepared query,kept: a row that prepares the projected maps in every query and one that
    reuses maps prepared once (the node's PreparedCache), with the same points and the
    projection's FLOPs only in the first; a bad value is a usage error."""
    bq = load_benchmark("bench_query")
    rows = query_rows(bq, tmp_path, "--prepared", "query,kept", "--no-encoder", "--presets", "2+2:off")
    assert [r["path"] for r in rows] == ["fast fp32 +epi", "fast fp32 +epi kept-maps", "reference"]
    assert rows[0]["points/ray"] == rows[1]["points/ray"]
    assert float(rows[1]["GFLOP"]) <= float(rows[0]["GFLOP"])
    model, _ = bq.build_bench_model("paper", quick=True)
    F, Hd = model.renderer.coarse.feature_dim, model.renderer.coarse.config.hidden_dim
    fields = 1 + (model.renderer.fine is not None)
    per_query, kept = (bq.query_flops(model, 4, m, 100, 400, 400, projected=True, composite_coarse=False)
                       for m in (1000, 0))
    assert per_query - kept == fields * 2 * 1000 * F * Hd   # the 1x1 projection of 1000 map pixels, per field
    assert bq.prepared_arg("kept,query") == [True, False]
    for bad in ("cached", "query,query", ""):
        with pytest.raises(Exception, match="--prepared takes query, kept or query,kept"):
            bq.prepared_arg(bad)

def test_interleaved_rows_are_timed_in_rounds(tmp_path, load_benchmark):
    """--interleave: each round calls every fast row once, in order; each row keeps its own
    preset (the closures bind it) and its repeat count."""
    bq = load_benchmark("bench_query")
    calls = []
    fns = [lambda i=i: calls.append(i) for i in range(3)]
    times = bq.time_interleaved(fns, torch.device("cpu"), 4)
    assert calls == [0, 1, 2] * 4 and [len(t) for t in times] == [4, 4, 4] and min(min(t) for t in times) >= 0
    page = tmp_path / "benchmarks.md"
    out = run_quick("bench_query.py", page, "--interleave", "--no-reference", "--no-encoder",
                    "--presets", "2+2,4+4", "--repeats", "3")
    lines = [ln.split() for ln in out.splitlines() if ln.startswith(("2+2 ", "4+4 "))]
    assert [ln[0] for ln in lines] == ["2+2", "4+4"]
    header = header_of(bq)
    rows = table_rows(page.read_text(), bq.SECTION)
    assert [r[header.index("preset")] for r in rows] == ["2+2", "4+4"]
    assert [r[header.index("n")] for r in rows] == ["3", "3"]
    assert float(rows[0][header.index("points/ray")]) < float(rows[1][header.index("points/ray")])


@pytest.mark.parametrize("pooling,source_rgb", [("mean", False), ("mean_var", False), ("mean_var", True)])
def test_flop_counter_matches_torch_flop_counter(pooling, source_rgb, monkeypatch, load_benchmark):
    import dataclasses

    from torch.utils.flop_counter import FlopCounterMode

    from viewseg_core.model.fast import QueryPreset, render_query_stats
    from viewseg_core.model.viewseg import ViewSeg

    from viewseg_core.model import fast

    # CPU queries pad each field call's rays to a bucket (fast.call_bucket); the estimate counts
    # the useful work only, so the padding is switched off here (it adds up to 6.25%).
    monkeypatch.setattr(fast, "call_bucket", lambda rays, per_call=0: rays)
    bq = load_benchmark("bench_query")
    torch.set_num_threads(1)
    model, _ = bq.build_bench_model("", quick=True)
    model = ViewSeg(dataclasses.replace(model.config, view_pooling=pooling, source_rgb=source_rgb)).eval()
    H, W = 12, 16
    scene = bq.synthetic_scene(H, W)
    with torch.no_grad():
        feats = model.encode_sources(scene.source_rgb)
        sources = model.make_sources(feats, scene.source_K, scene.source_c2w, H, W, rgb=scene.source_rgb)
        map_pixels = feats.shape[1] * feats.shape[-2] * feats.shape[-1]
        R = H * W
        for preset in (QueryPreset("", 4, 4), QueryPreset("", 4, 4, skip_weight=1e-2)):
            # torch's counter knows addmm but not the in-place addmm_ that the field's inference
            # forward accumulates its input layer with: count it by the same rule (2 m k n).
            def addmm_flop(self_shape, a_shape, b_shape, *args, **kwargs) -> int:
                return 2 * a_shape[0] * a_shape[1] * b_shape[1]

            # Nor the fused CPU linear layers (viewseg_core.model.cpu_linear): 2 m k n as well. The
            # counter looks ops up by packet: (x, w, b, attr, ...) or, for .binary, (x, other, w, b, attr).
            def linear_flop(x_shape, *args, **kwargs) -> int:
                w_shape = args[0] if isinstance(args[2], str) else args[1]
                return 2 * math.prod(x_shape[:-1]) * x_shape[-1] * w_shape[0]

            mapping = {torch.ops.aten.addmm_: addmm_flop, torch.ops.mkldnn._linear_pointwise: linear_flop}
            with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
                _, st = render_query_stats(model, scene.K[0], scene.c2w[0], H, W, sources, preset)
            est = bq.query_flops(model, 4, map_pixels, R, st.coarse_points, st.fine_points, projected=True,
                                 composite_coarse=False, packed_fine=preset.skip_weight > 0)
            assert abs(est / counter.get_total_flops() - 1) < 1e-3
        with bq.reference_path(model, 4, 4), FlopCounterMode(display=False) as counter:
            model.render(scene.K[0], scene.c2w[0], H, W, sources)
        est = bq.query_flops(model, 4, map_pixels, R, R * 4, R * 8, projected=False, composite_coarse=True)
        assert abs(est / counter.get_total_flops() - 1) < 1e-3
    # The reference path was restored.
    assert model.config.projected_features and "VIEWSEG_COMPOSITING" not in os.environ


def test_parse_preset_and_size(load_benchmark):
    bq = load_benchmark("bench_query")
    p = bq.parse_preset("32+16@1e-3")
    assert (p.num_coarse, p.num_fine, p.skip_weight, p.label) == (32, 16, 1e-3, "32+16 skip<0.001")
    assert bq.parse_preset("paper").num_fine == 128
    p = bq.parse_preset("rgbd:bf16")
    assert p == dataclasses.replace(PRESETS["rgbd"], amp="bf16") and p.label == "rgbd (8s+4b+0 free-skip bf16)"
    assert bq.parse_preset("8+8@1e-3:off").label == "8+8 skip<0.001 off"
    with pytest.raises(ValueError, match="amp must be one of"):
        bq.parse_preset("fast:int8")
    assert bq.parse_preset("8s+4b+4@1e-3/free/unexplained") == dataclasses.replace(PRESETS["rgbd_fine"], name="")
    p = bq.parse_preset("fast:off/budget=3072")   # points per field call: the budget rows of docs/benchmarks.md
    assert p == dataclasses.replace(PRESETS["fast"], amp="off", point_budget=3072)
    assert p.label == "fast (8+8 skip<0.001 off 3072/call)"
    assert bq.parse_preset("rgbd/budget=0") == PRESETS["rgbd"]
    for bad in ("rgbd/budget=x", "rgbd/budget=-5"):
        with pytest.raises(ValueError, match="/budget= takes a whole number"):
            bq.parse_preset(bad)
    with pytest.raises(ValueError, match="preset 'rgbx': use one of"):   # the preset's fault, not the budget's
        bq.parse_preset("rgbx/budget=3072")
    assert bq.parse_size("160x120") == (120, 160)


def test_miou_mode_scores_presets_on_a_test_split(tmp_path, load_benchmark):
    """--miou on a tiny synthetic split with a tiny model file and the run's config.yaml beside it."""
    from viewseg_core.data.synth.generate import SynthConfig, write_dataset
    from viewseg_core.model.viewseg import ModelConfig, ViewSeg
    from viewseg_core.model.weights import save_model

    bq = load_benchmark("bench_query")
    data = tmp_path / "data"
    write_dataset(data, 3, SynthConfig(views=12, height=30, width=40), seed=3, progress=False)
    run = tmp_path / "run"
    torch.manual_seed(0)
    save_model(ViewSeg(ModelConfig(**dict(bq.QUICK_CONFIG, num_coarse=8, num_fine=8))), run / "model.pt")
    (run / "config.yaml").write_text(
        f"data:\n  root: {data}\n  image_size: [30, 40]\n  num_sources: 4\n"
        "  pairs: {min_rotation_deg: 10.0, min_baseline: 0.2, min_overlap: 0.05}\n")
    page = tmp_path / "benchmarks.md"
    done = subprocess.run([sys.executable, str(BENCH / "bench_query.py"), "--miou", str(run / "model.pt"),
                           "--miou-examples", "2", "--presets", "4+4@1e-3", "--threads", "1", "--device", "cpu",
                           "--output", str(page)], cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                           capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = table_rows(page.read_text(), bq.QUALITY_SECTION)
    assert [r[4] for r in rows] == ["trained (8+8)", "4+4 skip<0.001"]
    header = [c.strip() for c in bq.QUALITY_HEADER.splitlines()[0].strip("|").split("|")]
    col = {name: header.index(name) for name in ("points/ray", "dataset mIoU", "labels equal to trained sampling",
                                                 "depth δ<1.25", "depth AbsRel", "depth empty")}
    assert all(len(r) == len(header) for r in rows)
    assert rows[0][col["labels equal to trained sampling"]] == "100.00%"
    assert float(rows[1][col["points/ray"]]) <= 12.0                      # points/ray <= 4 + 8
    for r in rows:
        assert 0.0 <= float(r[col["dataset mIoU"]]) <= 100.0                # percent
        empty = float(r[col["depth empty"]].rstrip("%"))
        assert 0.0 <= empty <= 100.0
        if empty < 100.0:                                                  # some pixel has a depth
            assert 0.0 <= float(r[col["depth δ<1.25"]]) <= 100.0 and float(r[col["depth AbsRel"]]) >= 0.0


def test_miou_mode_scores_the_free_path_check(tmp_path, load_benchmark):
    """--miou --min-free-path on an RGB-D tiny model with clean source depth: each preset gets a
    second row, the same labels with the depth of paths its sources never saw free withheld
    (counted as empty); without --miou the option is refused."""
    from viewseg_core.data.synth.generate import SynthConfig, write_dataset
    from viewseg_core.model.viewseg import ModelConfig, ViewSeg
    from viewseg_core.model.weights import save_model

    bq = load_benchmark("bench_query")
    data = tmp_path / "data"
    write_dataset(data, 3, SynthConfig(views=12, height=30, width=40), seed=3, progress=False)
    run = tmp_path / "run"
    torch.manual_seed(0)
    config = dict(bq.QUICK_CONFIG, num_coarse=8, num_fine=0, source_depth=True, depth_guided=True,
                  depth_evidence=True, guide_samples=4)
    save_model(ViewSeg(ModelConfig(**config)), run / "model.pt")
    (run / "config.yaml").write_text(
        f"data:\n  root: {data}\n  image_size: [30, 40]\n  num_sources: 4\n  source_depth: clean\n"
        "  pairs: {min_rotation_deg: 10.0, min_baseline: 0.2, min_overlap: 0.05}\n")
    page = tmp_path / "benchmarks.md"
    command = [sys.executable, str(BENCH / "bench_query.py"), "--miou", str(run / "model.pt"), "--miou-examples",
               "2", "--presets", "rgbd", "--threads", "1", "--device", "cpu", "--output", str(page)]
    done = subprocess.run(command + ["--min-free-path", "0.5"], cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = table_rows(page.read_text(), bq.QUALITY_SECTION)
    assert [r[4] for r in rows] == ["trained (8s+4b+0)", "trained (8s+4b+0) [free path >= 0.5]",
                                    "rgbd (8s+4b+0 free-skip)", "rgbd (8s+4b+0 free-skip) [free path >= 0.5]"]
    header = [c.strip() for c in bq.QUALITY_HEADER.splitlines()[0].strip("|").split("|")]
    col = {name: header.index(name) for name in ("points/ray", "dataset mIoU", "labels equal to trained sampling",
                                                 "depth empty")}
    for plain, checked in (rows[0:2], rows[2:4]):
        for name in ("points/ray", "dataset mIoU", "labels equal to trained sampling"):
            assert checked[col[name]] == plain[col[name]], name       # the same render, the same labels
        assert float(checked[col["depth empty"]].rstrip("%")) > float(plain[col["depth empty"]].rstrip("%"))
    refused = subprocess.run([sys.executable, str(BENCH / "bench_query.py"), "--min-free-path", "0.5", "--quick"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--min-free-path scores depth: it needs --miou" in refused.stderr


def test_fused_field_rows_are_gpu_only_on_cpu(tmp_path, monkeypatch, capsys, load_benchmark):
    """``--field reference,fused`` on CPU: the fused rows are dropped with a note (GPU-only);
    under TRITON_INTERPRET=1 they run in the interpreter (8x6, 2+2 samples: the whole fused
    query path, row and FLOP count included) and are printed, never recorded."""
    pytest.importorskip("triton")
    bq = load_benchmark("bench_query")
    monkeypatch.delenv("VIEWSEG_FIELD", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert bq.fast_field_impls("reference,fused", torch.device("cpu")) == ["reference"]
    assert bq.fast_field_impls("fused", torch.device("cpu")) == ["reference"]
    assert "fused rows: GPU-only" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--field"):
        bq.fast_field_impls("fused,triton", torch.device("cpu"))
    page = tmp_path / "benchmarks.md"
    out = run_quick("bench_query.py", page, "--field", "reference,fused", "--no-encoder", "--no-reference",
                    "--size", "8x6", "--presets", "2+2", env={"TRITON_INTERPRET": "1"})
    lines = [ln.split()[:2] for ln in out.splitlines() if ln.startswith("2+2 ")]
    assert lines == [["2+2", "fast"], ["2+2", "fast+fused"]] and "fast+fused (interpreter)" in out
    header = header_of(bq)
    fast_path = ("fast bf16" if cpu_has_native_bf16() else "fast fp32") + " +epi"  # amp auto, fused epilogues
    assert [r[header.index("path")] for r in table_rows(page.read_text(), bq.SECTION)] == [fast_path]
