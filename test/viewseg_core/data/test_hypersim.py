"""Hypersim reader on tiny files written in the real release layout (tilt-shift camera, inch units)."""
from __future__ import annotations

import csv
import json

import cv2
import h5py
import numpy as np
import pytest
import torch

from viewseg_core import cameras
from viewseg_core.classes import CLASS_NAMES, IGNORE_LABEL
from viewseg_core.data.hypersim import (HypersimScene, inspect_frame, load_split, read_split_csv, split_scenes,
                                        tonemap)

SCENE = "ai_001_002"
W, H = 16, 12
MPAU = 0.0254                                      # the scene is modelled in inches
# Tilt-shift: the image window is shifted off the optical axis (third column of M).
M = np.array([[0.72, 0.0, 0.11], [0.0, 0.54, -0.08], [0.0, 0.0, -1.0]])
WALL_X = 3.0                                       # a wall at x = 3 m fills every image


def _R_world_from_cam(forward):
    f = np.asarray(forward, dtype=np.float64)
    f /= np.linalg.norm(f)
    x = np.cross(f, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(x, f)                             # Hypersim camera: x right, y up, z = -forward
    return np.stack([x, y, -f], axis=1)


POSES = [  # (position in asset units, forward direction)
    (np.array([10.0, 20.0, 40.0]), [1.0, 0.2, -0.3]),
    (np.array([-5.0, 35.0, 55.0]), [1.0, -0.3, -0.1]),
]


def _h5(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("dataset", data=arr)


def _truth(pos_au, forward):
    """Independent Hypersim-convention geometry: per-pixel world hit points and distances."""
    R = _R_world_from_cam(forward)
    o = pos_au * MPAU
    r, c = np.mgrid[0:H, 0:W]
    u = (c + 0.5) / W * 2 - 1
    v = 1 - (r + 0.5) / H * 2
    rays = np.stack([u, v, np.ones_like(u)], -1) @ M.T @ R.T          # world, unnormalised
    t = (WALL_X - o[0]) / rays[..., 0]
    X = o + t[..., None] * rays
    return X, np.linalg.norm(X - o, axis=-1)


@pytest.fixture
def hypersim_root(tmp_path):
    root = tmp_path / "hypersim"
    scene = root / SCENE
    (scene / "_detail").mkdir(parents=True)
    (scene / "_detail" / "metadata_scene.csv").write_text(f"parameter_name,parameter_value\n"
                                                          f"meters_per_asset_unit,{MPAU}\n")
    cam_dir = scene / "_detail" / "cam_00"
    _h5(cam_dir / "camera_keyframe_positions.hdf5", np.array([p for p, _ in POSES]))
    _h5(cam_dir / "camera_keyframe_orientations.hdf5", np.array([_R_world_from_cam(f) for _, f in POSES]))
    rng = np.random.default_rng(0)
    for i, (pos, fwd) in enumerate(POSES):
        geo = scene / "images" / "scene_cam_00_geometry_hdf5"
        _, dist = _truth(pos, fwd)
        _h5(geo / f"frame.{i:04d}.depth_meters.hdf5", dist.astype(np.float32))
        sem = rng.integers(1, 41, (H, W)).astype(np.int16)
        sem[0, 0] = -1
        _h5(geo / f"frame.{i:04d}.semantic.hdf5", sem)
        ent = np.ones((H, W), np.int32)
        ent[-1] = -1
        _h5(geo / f"frame.{i:04d}.render_entity_id.hdf5", ent)
        color = rng.uniform(0.0, 3.0, (H, W, 3)).astype(np.float16)
        _h5(scene / "images" / "scene_cam_00_final_hdf5" / f"frame.{i:04d}.color.hdf5", color)
    cols = ["scene_name", "settings_camera_fov", "settings_output_img_height", "settings_output_img_width",
            "settings_units_info_meters_scale"] + [f"M_cam_from_uv_{i}{j}" for i in range(3) for j in range(3)]
    with open(root / "metadata_camera_parameters.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(cols)
        wr.writerow(["ai_001_001", 1.0, 768, 1024, 0.01] + [1, 0, 0, 0, 1, 0, 0, 0, -1])
        wr.writerow([SCENE, 1.2, H, W, MPAU] + M.reshape(-1).tolist())
    with open(root / "metadata_images_split_scene_v1.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["scene_name", "camera_name", "frame_id", "included_in_public_release", "exclude_reason",
                     "split_partition_name"])
        wr.writerow([SCENE, "cam_00", 0, "True", "", "train"])
        wr.writerow([SCENE, "cam_00", 1, "True", "", "val"])
        wr.writerow([SCENE, "cam_01", 0, "False", "bad", "train"])
    return root


def test_camera_pose_and_depth_land_back_on_the_same_pixels(hypersim_root):
    hs = HypersimScene(hypersim_root, SCENE)
    assert len(hs) == 2 and hs.camera_model.tilt_shift
    assert (hs.camera_model.width, hs.camera_model.height) == (W, H)
    K = torch.as_tensor(hs.K)
    uv = cameras.pixel_grid(H, W, dtype=torch.float64)
    for i, (pos, fwd) in enumerate(POSES):
        cam = hs.camera(i)
        np.testing.assert_allclose(cam.c2w[:3, 3], pos * MPAU, atol=1e-12)     # asset units -> metres
        X_true, dist = _truth(pos, fwd)
        depth = hs.load_depth(i)
        assert depth.dtype == np.float32
        c2w = torch.as_tensor(cam.c2w)
        # Projecting the true 3D points lands on the pixel centres, at the stored planar depth.
        proj, z, front = cameras.project_points(K, c2w, torch.as_tensor(X_true.reshape(-1, 3)))
        assert front.all()
        np.testing.assert_allclose(proj.numpy(), uv.numpy(), atol=1e-6)
        np.testing.assert_allclose(depth.reshape(-1), z.numpy(), rtol=1e-6)
        assert np.all(depth < dist)                                  # planar < distance off-axis
        # Lifting pixels with (K, c2w, planar depth) recovers the points.
        o, d = cameras.pixels_to_rays(K, c2w, uv)
        zc = cameras.ray_z_component(K, c2w, d)
        X = o + (torch.as_tensor(depth.reshape(-1), dtype=torch.float64) / zc)[:, None] * d
        np.testing.assert_allclose(X.numpy(), X_true.reshape(-1, 3), atol=1e-5)


def test_labels_rgb_and_view(hypersim_root):
    hs = HypersimScene(hypersim_root, SCENE)
    view = hs.load_view(1)
    assert view.view_id == "cam_00/0001" and view.rgb.shape == (H, W, 3) and view.rgb.dtype == np.uint8
    with h5py.File(hypersim_root / SCENE / "images/scene_cam_00_geometry_hdf5/frame.0001.semantic.hdf5") as f:
        sem = f["dataset"][()]
    assert view.labels[0, 0] == IGNORE_LABEL
    keep = (sem >= 1) & (sem <= 37)
    np.testing.assert_array_equal(view.labels[keep], sem[keep] - 1)
    assert np.all(view.labels[sem >= 38] == IGNORE_LABEL)
    assert CLASS_NAMES[view.labels[sem == 5][0]] == "chair" if (sem == 5).any() else True


def test_tonemap_follows_hypersim():
    grey = np.full((4, 5, 3), 0.37)
    out = tonemap(grey)
    assert np.all(out == round(0.8 * 255))           # 90th percentile brightness -> 0.8 after gamma
    hot = grey.copy()
    hot[0] = 1e4                                     # invalid pixels do not set the exposure
    valid = np.ones((4, 5), bool)
    valid[0] = False
    assert np.all(tonemap(hot, valid)[1:] == round(0.8 * 255))
    assert np.all(tonemap(np.zeros((2, 2, 3))) == 0)


def test_preview_jpg_and_geometry_only_frames(hypersim_root):
    scene = hypersim_root / SCENE
    prev = scene / "images" / "scene_cam_00_final_preview"
    prev.mkdir(parents=True)
    cv2.imwrite(str(prev / "frame.0000.tonemap.jpg"), np.full((H, W, 3), 90, np.uint8))
    hs = HypersimScene(hypersim_root, SCENE, rgb="jpg")
    assert len(hs) == 1 and abs(int(hs.load_view(0).rgb.mean()) - 90) <= 2
    for p in (scene / "images" / "scene_cam_00_final_hdf5").iterdir():
        p.unlink()
    assert len(HypersimScene(hypersim_root, SCENE, rgb="hdf5")) == 0
    assert len(HypersimScene(hypersim_root, SCENE, rgb="hdf5", require_rgb=False)) == 2
    info = inspect_frame(hypersim_root, SCENE, "cam_00", 1)
    X, _ = _truth(*POSES[1])
    d = info["planar_depth_m"]
    assert d["min"] <= d["median"] <= d["max"] and d["valid_fraction"] == 1.0
    np.testing.assert_allclose(info["c2w_opencv_m"][0][3], POSES[1][0][0] * MPAU)
    assert info["tilt_shift"] and (info["width"], info["height"]) == (W, H)


def test_inspect_cli_json(hypersim_root, capsys):
    from viewseg_core.cli import main
    assert main(["inspect-hypersim", str(hypersim_root), "--scene", SCENE, "--cam", "cam_00", "--frame", "0",
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert np.asarray(info["K"]).shape == (3, 3) and info["planar_depth_m"]["center"] > 0


def test_split_csv(hypersim_root):
    split = read_split_csv(hypersim_root / "metadata_images_split_scene_v1.csv")
    assert split == {"train": [(SCENE, "cam_00", 0)], "val": [(SCENE, "cam_00", 1)]}
    csv_path = hypersim_root / "metadata_images_split_scene_v1.csv"
    assert split_scenes(hypersim_root, csv_path, "val") == {SCENE: [("cam_00", 1)]}
    scenes = load_split(hypersim_root, csv_path, "val")
    assert [len(s) for s in scenes] == [1] and scenes[0].camera(0).view_id == "cam_00/0001"


def test_corrupt_and_missing_files_name_the_file(hypersim_root):
    scene = hypersim_root / SCENE
    p = scene / "images" / "scene_cam_00_geometry_hdf5" / "frame.0000.depth_meters.hdf5"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    hs = HypersimScene(hypersim_root, SCENE)
    with pytest.raises(ValueError, match="frame.0000.depth_meters.hdf5"):
        hs.load_view(0)
    (scene / "_detail" / "metadata_scene.csv").write_text("parameter_name,parameter_value\n")
    (hypersim_root / "metadata_camera_parameters.csv").write_text(
        (hypersim_root / "metadata_camera_parameters.csv").read_text().replace(f",{MPAU},", ",,"))
    with pytest.raises(ValueError, match="metadata_scene.csv"):
        HypersimScene(hypersim_root, SCENE)
    with pytest.raises(ValueError, match="no row for scene 'ai_009_009'"):
        (scene.parent / "ai_009_009").mkdir()
        HypersimScene(hypersim_root, "ai_009_009")
    (scene / "_detail" / "metadata_scene.csv").write_text(f"parameter_name,parameter_value\n"
                                                          f"meters_per_asset_unit,{MPAU}\n")
    pos = scene / "_detail" / "cam_00" / "camera_keyframe_positions.hdf5"
    pos.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="camera_keyframe_positions.hdf5"):
        HypersimScene(hypersim_root, SCENE, camera_table=hypersim_root / "metadata_camera_parameters.csv")
