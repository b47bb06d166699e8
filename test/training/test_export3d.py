"""3D export: PLY round trips (binary and ASCII), fusion of an analytic depth image, the
half-way pose, and `viewseg export-3d` end to end on a tiny synthetic scene."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from training.config_io import load_config
from training.export3d import PointCloud, fuse, halfway_pose, query_poses, read_ply, write_ply
from training.train import TrainConfig
from viewseg_core import cli
from viewseg_core.classes import PALETTE
from viewseg_core.model.viewseg import ViewSeg
from viewseg_core.model.weights import save_model

from .conftest import TINY_OVERRIDES

CONFIG = str(Path(__file__).resolve().parents[2] / "training" / "configs" / "synthetic_small.yaml")


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path, binary):
    cloud = PointCloud(points=np.array([[0.0, 0.0, 0.0], [1.25, -2.5, 3.125], [1e-3, 4.0, -7.75]], np.float32),
                       colors=np.array([[0, 0, 0], [255, 128, 7], [1, 2, 3]], np.uint8),
                       labels=np.array([0, 36, 5], np.uint8))
    path = write_ply(tmp_path / "c.ply", cloud, binary=binary, comments=["a test cloud"])
    header = path.read_bytes().split(b"end_header\n")[0].decode()
    assert ("binary_little_endian" in header) == binary and "comment a test cloud" in header
    assert "element vertex 3" in header and "property uchar label" in header
    back = read_ply(path)
    assert list(back) == ["x", "y", "z", "red", "green", "blue", "label"]
    assert len(back["x"]) == 3
    np.testing.assert_array_equal(np.stack([back["x"], back["y"], back["z"]], 1), cloud.points)
    np.testing.assert_array_equal(np.stack([back["red"], back["green"], back["blue"]], 1), cloud.colors)
    np.testing.assert_array_equal(back["label"], cloud.labels)
    assert back["red"].dtype == np.uint8 and back["x"].dtype == np.float32


def _plane_view(depth_value: float, H: int = 4, W: int = 6):
    K = torch.tensor([[10.0, 0, (W - 1) / 2], [0, 10.0, (H - 1) / 2], [0, 0, 1]])
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([5.0, 5.0, 5.0])
    depth = torch.full((1, H, W), depth_value)
    return K[None], c2w[None], depth


def test_fuse_lifts_pixels_and_votes_per_voxel():
    K, c2w, depth = _plane_view(2.0)
    H, W = depth.shape[-2:]
    labels = torch.full((1, H, W), 3)
    labels[0, 0, :4] = 5          # 4 of 24 pixels say "sofa" (5), the rest "bed" (3)
    labels[0, 3, 5] = 255         # unknown: dropped
    rgb = torch.full((1, H, W, 3), 100, dtype=torch.uint8)
    conf = torch.ones(1, H, W)
    conf[0, 1, 1] = 0.1           # low confidence: dropped
    raw = fuse(K, c2w, depth, labels, rgb, conf, min_confidence=0.5, voxel=0.0)
    assert len(raw) == H * W - 2
    np.testing.assert_allclose(raw.points[:, 2], 7.0, atol=1e-6)  # z = 5 + depth
    # pixel (row 0, col 0): x = 5 + (0 - 2.5) / 10 * 2, y = 5 + (0 - 1.5) / 10 * 2
    np.testing.assert_allclose(raw.points[0], [4.5, 4.7, 7.0], atol=1e-6)
    assert raw.labels[0] == 5 and tuple(raw.colors[0]) == tuple(PALETTE[5])
    fused = fuse(K, c2w, depth, labels, rgb, conf, min_confidence=0.5, voxel=10.0, color="rgb")
    assert len(fused) == 1 and fused.labels[0] == 3  # the majority
    np.testing.assert_allclose(fused.points[0], raw.points.mean(0), atol=1e-5)
    assert tuple(fused.colors[0]) == (100, 100, 100)


def test_halfway_pose_and_query_poses():
    a = np.eye(4)
    b = np.eye(4)
    t = math.radians(90)
    b[:3, :3] = [[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]]
    b[:3, 3] = [2.0, 0.0, 0.0]
    mid = halfway_pose(a, b)
    h = math.radians(45)
    np.testing.assert_allclose(mid[:3, :3], [[math.cos(h), 0, math.sin(h)], [0, 1, 0], [-math.sin(h), 0, math.cos(h)]],
                               atol=1e-12)
    np.testing.assert_allclose(mid[:3, 3], [1.0, 0.0, 0.0])
    poses = query_poses(np.stack([a, b]), yaw_deg=(-10, 0, 10), pitch_deg=(0, 5), halfway=True)
    assert poses.shape == (3 * 3 * 2, 4, 4)
    np.testing.assert_allclose(poses[2], a)  # (yaw 0, pitch 0) of the first source is the source
    for p in poses:
        np.testing.assert_allclose(p[:3, :3] @ p[:3, :3].T, np.eye(3), atol=1e-12)


def test_export_3d_cli_end_to_end(tiny_synth, tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, CONFIG, [*TINY_OVERRIDES, f"data.root={tiny_synth}"])
    torch.manual_seed(0)
    model = ViewSeg(cfg.model_config()).eval()
    with torch.no_grad():  # opaque wherever a source sees: every ray then has a surface
        for f in (model.renderer.coarse, model.renderer.fine):
            f.rgb_density_head.out.bias[3] = 30.0
    ckpt = save_model(model, tmp_path / "model.pt")
    scene = sorted(p.name for p in Path(tiny_synth).iterdir() if (p / "cameras.json").is_file())[0]
    out = tmp_path / "cloud.ply"
    rc = cli.main(["export-3d", "--checkpoint", str(ckpt), "--data", str(tiny_synth), "--scene", scene,
                   "--out", str(out), "--config", CONFIG, "--yaw=-20,0,20", "--pitch", "0",
                   "--min-confidence", "0", "--voxel", "0.05", "--threads", "1",
                   *[o for o in TINY_OVERRIDES if o.startswith("data.")]])
    assert rc == 0
    back = read_ply(out)
    n = len(back["x"])
    assert n > 100
    assert (back["label"] < 37).all()
    np.testing.assert_array_equal(np.stack([back["red"], back["green"], back["blue"]], 1), PALETTE[back["label"]])
    header = out.read_bytes().split(b"end_header\n")[0].decode()
    assert f"scene {scene}" in header and "21 rendered views" in header  # (4 + 3 halfway) x 3 yaws


def test_export_3d_hands_an_rgbd_model_its_source_depth(tiny_synth, tmp_path):
    """An RGB-D (depth-guided) model renders from the sources' depth; --source-depth none leaves
    it to its no-depth behaviour, and the two clouds differ."""
    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, CONFIG, [*TINY_OVERRIDES, f"data.root={tiny_synth}", "model.source_depth=true",
                                            "model.depth_guided=true", "model.guide_samples=4"])
    torch.manual_seed(0)
    model = ViewSeg(cfg.model_config()).eval()
    with torch.no_grad():
        for f in (model.renderer.coarse, model.renderer.fine):
            f.rgb_density_head.out.bias[3] = 30.0
    ckpt = save_model(model, tmp_path / "model.pt")
    scene = sorted(p.name for p in Path(tiny_synth).iterdir() if (p / "cameras.json").is_file())[0]
    clouds = {}
    for mode in ("clean", "none"):
        out = tmp_path / f"{mode}.ply"
        rc = cli.main(["export-3d", "--checkpoint", str(ckpt), "--data", str(tiny_synth), "--scene", scene,
                       "--out", str(out), "--config", CONFIG, "--yaw", "0", "--pitch", "0", "--no-halfway",
                       "--min-confidence", "0", "--voxel", "0", "--threads", "1", "--source-depth", mode,
                       *[o for o in TINY_OVERRIDES if o.startswith("data.")]])
        assert rc == 0
        back = read_ply(out)
        clouds[mode] = np.stack([back["x"], back["y"], back["z"]], 1)
    assert len(clouds["clean"]) > 100
    assert clouds["clean"].shape != clouds["none"].shape or not np.allclose(clouds["clean"], clouds["none"])
