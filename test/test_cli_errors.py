"""Every ``viewseg`` subcommand ends a user-fixable failure with ONE stderr line
``viewseg CMD: error: ...`` and exit status 2, never a traceback and never a silent exit 0:
bad numbers, a GPU this machine lacks, an output path that is a file, a folder, a device, an
unwritable place, or a disk that fills up mid-write.

Run through the real entry point (``viewseg_core.cli.main``, and a subprocess where the
failure needs a resource limit). Each case is cheap because the checks run before any data is
read or model built; that ordering is part of what is tested.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from viewseg_core.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "training" / "configs" / "synthetic_small.yaml")


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse usage errors exit from inside parse_args
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, command: str, *needles: str) -> str:
    assert code == 2, f"exit {code}, stderr: {err!r}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err!r}"
    assert lines[0].startswith(f"viewseg {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def unwritable_dir(tmp_path) -> Path:
    """A folder nothing can be created in: chmod 0555 for a normal user. Root ignores mode
    bits, so as root (this suite's CI runs as root) /sys is used: creating files there is
    refused (EACCES/EPERM) even for root."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    try:
        fd = os.open("/sys/viewseg_probe", os.O_CREAT | os.O_WRONLY)
    except OSError:
        yield Path("/sys")
        return
    os.close(fd)
    pytest.skip("/sys is writable here: no unwritable folder to test with")


# --------------------------------------------------------------------------- numbers
NUMERIC_CASES = [
    ("synth", ["--scenes", "-1"], "--scenes"),
    ("synth", ["--scenes", "0"], "--scenes"),
    ("synth", ["--views", "0"], "--views"),
    ("synth", ["--size", "0x24"], "--size"),
    ("synth", ["--workers", "0"], "--workers"),
    ("synth", ["--seed", "-3"], "--seed"),
    ("mine-pairs", ["ROOT", "--sources", "0"], "--sources"),
    ("mine-pairs", ["ROOT", "--min-overlap", "1.5"], "--min-overlap"),
    ("mine-pairs", ["ROOT", "--min-baseline", "-0.1"], "--min-baseline"),
    ("mine-pairs", ["ROOT", "--workers", "0"], "--workers"),
    ("inspect-hypersim", ["ROOT", "--scene", "ai_001_001", "--frame", "-1"], "--frame"),
    ("pretrain-2d", ["--data", "D", "--epochs", "0"], "--epochs"),
    ("pretrain-2d", ["--data", "D", "--batch-size", "0"], "--batch-size"),
    ("pretrain-2d", ["--data", "D", "--lr", "0"], "--lr"),
    ("pretrain-2d", ["--data", "D", "--lr", "nan"], "--lr"),
    ("pretrain-2d", ["--data", "D", "--max-steps", "-1"], "--max-steps"),
    ("pretrain-2d", ["--data", "D", "--workers", "-1"], "--workers"),
    ("pretrain-2d", ["--data", "D", "--feature-dim", "0"], "--feature-dim"),
    ("pretrain-2d", ["--data", "D", "--size", "0x0"], "--size"),
    ("bag2scene", ["BAG", "--image-topic", "/i", "--camera-info-topic", "/c", "--min-translation", "-1"],
     "--min-translation"),
    ("bag2scene", ["BAG", "--image-topic", "/i", "--camera-info-topic", "/c", "--sync-tolerance", "-0.01"],
     "--sync-tolerance"),
    ("eval", ["--checkpoint", "C", "--panels", "-1"], "--panels"),
    ("eval", ["--checkpoint", "C", "--max-examples", "-1"], "--max-examples"),
    ("eval", ["--checkpoint", "C", "--max-splat", "0"], "--max-splat"),
    ("eval", ["--checkpoint", "C", "--bootstrap", "-1"], "--bootstrap"),
    ("eval", ["--checkpoint", "C", "--threads", "-2"], "--threads"),
    ("export-3d", ["--checkpoint", "C", "--scene", "s", "--batch", "0"], "--batch"),
    ("export-3d", ["--checkpoint", "C", "--scene", "s", "--min-confidence", "2"], "--min-confidence"),
    ("export-3d", ["--checkpoint", "C", "--scene", "s", "--voxel", "-1"], "--voxel"),
    ("export-3d", ["--checkpoint", "C", "--scene", "s", "--yaw="], "--yaw"),
]


@pytest.mark.parametrize("command, args, option", NUMERIC_CASES,
                         ids=[f"{c}{''.join(a[-2:])}" for c, a, _ in NUMERIC_CASES])
def test_bad_numbers_are_one_line_usage_errors(command, args, option, tmp_path, capsys):
    args = [str(tmp_path / a) if a in ("ROOT", "D", "C", "BAG") else a for a in args]
    out = [] if command == "inspect-hypersim" else ["--out", str(tmp_path / "out")]
    code, stdout, err = run([command, *args, *out], capsys)
    assert_one_line_error(code, err, command, f"argument {option}")
    assert stdout == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, key", [
    ("run.max_steps=-5", "run.max_steps"), ("run.max_steps=0", "run.max_steps"),
    ("run.checkpoint_every=0", "run.checkpoint_every"), ("optim.lr=0", "optim.lr"),
    ("optim.lr=-1e-3", "optim.lr"), ("optim.batch_size=0", "optim.batch_size"),
    ("data.image_size=[0,80]", "data.image_size"), ("data.num_sources=0", "data.num_sources"),
    ("loss.rgb_weight=-1", "loss.rgb_weight"), ("run.max_steps=ten", "run.max_steps"),
    ("run.max_steps=2.5", "run.max_steps"), ("data.kind=hdf5", "data.kind"),
])
def test_train_rejects_bad_config_values_before_anything_runs(override, key, tmp_path, capsys):
    out_dir = tmp_path / "run"
    code, stdout, err = run(["train", "--config", CONFIG, f"run.out_dir={out_dir}", override], capsys)
    assert_one_line_error(code, err, "train", key)
    assert not out_dir.exists()  # refused before any folder was made


# --------------------------------------------------------------------------- devices
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the GPU the test asks for")
@pytest.mark.parametrize("command, args", [
    ("train", ["--config", CONFIG, "run.device=cuda", "run.out_dir=OUT"]),
    ("eval", ["--checkpoint", "C", "--out", "OUT", "--device", "cuda"]),
    ("export-3d", ["--checkpoint", "C", "--scene", "s", "--out", "OUT", "--device", "cuda:0"]),
    ("pretrain-2d", ["--data", "D", "--out", "OUT", "--device", "cuda"]),
    ("bag2scene", ["BAG", "--out", "OUT", "--image-topic", "/i", "--camera-info-topic", "/c",
                   "--segmenter", "C", "--device", "cuda"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_cuda_without_a_gpu_is_one_line(command, args, tmp_path, capsys):
    args = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    args = [str(tmp_path / a) if a in ("D", "C", "BAG") else a for a in args]
    code, _, err = run([command, *args], capsys)
    assert_one_line_error(code, err, command, "CUDA is not available", "cpu")
    assert not (tmp_path / "out").exists()


def test_device_names_are_checked(tmp_path, capsys):
    code, _, err = run(["eval", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path / "o"),
                        "--device", "gpu0"], capsys)
    assert_one_line_error(code, err, "eval", "'gpu0' is not a device")


# --------------------------------------------------------------------------- output paths
def test_output_path_that_is_a_file_or_a_folder(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    cases = [
        (["synth", "--out", str(a_file), "--scenes", "1", "--views", "2", "--no-progress"], str(a_file),
         "not a folder"),
        (["eval", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(a_file)], str(a_file), "not a folder"),
        (["train", "--config", CONFIG, f"run.out_dir={a_file}"], str(a_file), "not a folder"),
        (["export-3d", "--checkpoint", str(tmp_path / "c.pt"), "--scene", "s", "--out", str(tmp_path)],
         str(tmp_path), "is a folder"),
        (["export-model", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(a_file / "model.pt")],
         str(a_file), "not a folder"),
        (["pretrain-2d", "--data", str(tmp_path), "--out", str(tmp_path)], str(tmp_path), "is a folder"),
        (["mine-pairs", str(tmp_path), "--out", str(tmp_path)], str(tmp_path), "is a folder"),
    ]
    for argv, path, reason in cases:
        code, _, err = run(argv, capsys)
        line = assert_one_line_error(code, err, argv[0], reason)
        assert line.split(": error: ", 1)[1].startswith(path + ":"), line  # the path comes first
    assert a_file.read_text() == "keep me"


def test_unwritable_place(unwritable_dir, capsys):
    target = unwritable_dir / "viewseg_out"
    for argv in (["synth", "--out", str(target), "--scenes", "1", "--views", "2", "--no-progress"],
                 ["eval", "--checkpoint", "c.pt", "--out", str(target)],
                 ["export-3d", "--checkpoint", "c.pt", "--scene", "s", "--out", str(target / "x.ply")]):
        code, _, err = run(argv, capsys)
        line = assert_one_line_error(code, err, argv[0], str(unwritable_dir))
        assert "Permission denied" in line or "Operation not permitted" in line
    assert not target.exists()


def test_a_device_file_is_refused_not_replaced(tmp_path, capsys):
    # /dev/full: atomic writes replace the target, which would swap the device for a file.
    before = os.stat("/dev/full")
    code, _, err = run(["export-3d", "--checkpoint", str(tmp_path / "c.pt"), "--scene", "s", "--out", "/dev/full"],
                       capsys)
    assert_one_line_error(code, err, "export-3d", "/dev/full: not a regular file")
    after = os.stat("/dev/full")
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "metrics.json").symlink_to(fifo)
    code, _, err = run(["eval", "--checkpoint", str(tmp_path / "c.pt"), "--out", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "eval", "metrics.json: not a regular file")
    assert fifo.is_fifo()


def _limit_file_size():
    # No file may grow past 64 KiB: write() then fails with EFBIG, as it would with ENOSPC
    # on a full disk. SIGXFSZ would kill the process instead; ignored, the error reaches Python.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))


def test_disk_full_mid_write_is_one_line_and_leaves_no_temp_file(tmp_path):
    out = tmp_path / "synth"
    proc = subprocess.run([sys.executable, "-m", "viewseg_core.cli", "synth", "--out", str(out), "--scenes", "1",
                           "--views", "2", "--size", "160x120", "--no-progress", "--no-pairs"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("viewseg synth: error: ") and proc.stderr.endswith(": File too large\n")
    failed = Path(proc.stderr[len("viewseg synth: error: "):].rsplit(": ", 1)[0])
    assert failed.parent.is_dir() and out in failed.parents
    # scene.json (~45 KB), the RGB and label PNGs fit; a 160x120 float32 depth map (76928 B)
    # does not: the first one fails, and is absent rather than torn.
    assert failed == out / "synth_s0_00000" / "depth" / "000000.npy"
    assert not failed.exists()
    assert [p.name for p in out.rglob("*.tmp")] == []
    scene = out / "synth_s0_00000"
    assert (scene / "rgb" / "000000.png").stat().st_size > 1000 and (scene / "scene.json").stat().st_size > 20000


def test_torchrun_entry_point_reports_errors_the_same_way(tmp_path):
    # torchrun starts `python -m training.train`, not `viewseg train`: same one-line errors.
    proc = subprocess.run([sys.executable, "-m", "training.train", "--config", CONFIG,
                           f"run.out_dir={tmp_path / 'run'}", "run.max_steps=-5"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "viewseg train: error: config key run.max_steps must be >= 1, got -5\n"
