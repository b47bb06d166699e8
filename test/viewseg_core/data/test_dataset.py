"""Training dataset: shapes, ray/label consistency, resizing with matching K, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewseg_core import cameras
from viewseg_core.classes import LOSS_IGNORE_INDEX
from viewseg_core.data.dataset import DatasetConfig, ViewSegDataset, collate, resize_view, seed_worker
from viewseg_core.data.pairs import PairConfig, PairEntry, mine_pairs
from viewseg_core.data.scene_folder import SceneFolder
from viewseg_core.data.synth import SynthConfig, load_scene, render, write_scene
from viewseg_core.data.synth.raycast import cast_rays

H, W = 48, 64
PAIRS = PairConfig(num_sources=2, min_overlap=0.05, min_baseline=0.3, min_rotation_deg=15.0)


@pytest.fixture(scope="module")
def scene_and_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds") / "scene"
    folder = write_scene(root, 21, SynthConfig(views=14, width=W, height=H))
    pairs = mine_pairs(folder, PAIRS)
    assert len(pairs) >= 4
    return folder, pairs


def test_example_shapes_and_dtypes(scene_and_pairs):
    folder, pairs = scene_and_pairs
    ds = ViewSegDataset([folder], pairs, DatasetConfig(num_sources=2, image_size=(24, 32), target_rays=100,
                                                       source_rays=30))
    ex = ds[0]
    V, h, w = 2, 24, 32
    expect = {"source_rgb": ((V, 3, h, w), torch.float32), "source_K": ((V, 3, 3), torch.float32),
              "source_c2w": ((V, 4, 4), torch.float32), "source_labels": ((V, h, w), torch.int64),
              "source_depth": ((V, h, w), torch.float32), "source_ray_index": ((V, 30), torch.int64),
              "source_ray_uv": ((V, 30, 2), torch.float32), "source_ray_rgb": ((V, 30, 3), torch.float32),
              "source_ray_labels": ((V, 30), torch.int64), "source_ray_depth": ((V, 30), torch.float32),
              "target_K": ((3, 3), torch.float32), "target_c2w": ((4, 4), torch.float32),
              "target_size": ((2,), torch.int64), "target_ray_index": ((100,), torch.int64),
              "target_ray_uv": ((100, 2), torch.float32), "target_rgb": ((100, 3), torch.float32),
              "target_labels": ((100,), torch.int64), "target_depth": ((100,), torch.float32)}
    for k, (shape, dtype) in expect.items():
        assert tuple(ex[k].shape) == shape and ex[k].dtype == dtype, k
    assert 0.0 <= ex["source_rgb"].min() and ex["source_rgb"].max() <= 1.0
    assert ex["target_size"].tolist() == [h, w]
    lab = ex["source_labels"]
    assert ((lab == LOSS_IGNORE_INDEX) | ((lab >= 0) & (lab < 37))).all()
    # Source rays index into the source images.
    flat = ex["source_labels"].reshape(V, -1)
    assert torch.equal(torch.gather(flat, 1, ex["source_ray_index"]), ex["source_ray_labels"])
    uv = ex["source_ray_uv"]
    assert torch.equal(uv[..., 1] * w + uv[..., 0], ex["source_ray_index"].float())
    batch = collate([ds[0], ds[1]])
    assert batch["source_rgb"].shape == (2, V, 3, h, w) and batch["target_labels"].shape == (2, 100)
    assert batch["scene"] == [folder.name] * 2 and len(batch["source_ids"]) == 2


def test_target_rays_agree_with_the_scene(scene_and_pairs):
    """uv + K + c2w + planar depth of each ray gives a 3D point of the ray's class."""
    folder, pairs = scene_and_pairs
    scene = load_scene(folder.root)
    ds = ViewSegDataset([folder], pairs, DatasetConfig(num_sources=2, image_size=None, target_rays=300))
    ex = ds[1]
    K, c2w = ex["target_K"].double(), ex["target_c2w"].double()
    o, d = cameras.pixels_to_rays(K, c2w, ex["target_ray_uv"].double())
    z = cameras.ray_z_component(K, c2w, d)
    X = (o + (ex["target_depth"].double() / z)[:, None] * d).numpy()
    origin = c2w[:3, 3].numpy()
    t, prim = cast_rays(scene, np.broadcast_to(origin, X.shape), X - origin)
    np.testing.assert_allclose(t, 1.0, atol=1e-4)          # the point is the first surface on the ray
    lab = ex["target_labels"].numpy()
    ok = lab != LOSS_IGNORE_INDEX
    np.testing.assert_array_equal(scene.label[prim[ok]], lab[ok])


def test_resize_moves_K_with_the_pixels(scene_and_pairs):
    folder, _ = scene_and_pairs
    scene = load_scene(folder.root)
    view = folder.load_view(3)
    small = resize_view(view, (H // 2, W // 2))
    np.testing.assert_allclose(small.K, cameras.resize_intrinsics(view.K, (H, W), (H // 2, W // 2)))
    # Rendering the scene with the resized K reproduces the resized labels, up to edge pixels.
    r = render(scene, small.K, small.c2w, H // 2, W // 2)
    assert (r.labels == small.labels).mean() > 0.93
    upscaled = resize_view(view, (H * 2, W * 2))
    r = render(scene, upscaled.K, upscaled.c2w, H * 2, W * 2)
    assert (r.labels == upscaled.labels).mean() > 0.93


def test_examples_are_deterministic_per_seed_epoch_index(scene_and_pairs):
    folder, pairs = scene_and_pairs
    cfg = DatasetConfig(num_sources=2, image_size=(24, 32), target_rays=64, source_rays=8, seed=5)
    a, b = ViewSegDataset([folder], pairs, cfg), ViewSegDataset([folder], pairs, cfg)
    ea, eb = a[2], b[2]
    for k in ea:
        if isinstance(ea[k], torch.Tensor):
            assert torch.equal(ea[k].nan_to_num(-1.0), eb[k].nan_to_num(-1.0)), k   # NaN = unknown depth
        else:
            assert ea[k] == eb[k], k
    b.set_epoch(1)
    assert not torch.equal(b[2]["target_ray_index"], ea["target_ray_index"])
    a.set_epoch(1)
    assert torch.equal(a[2]["target_ray_index"], b[2]["target_ray_index"])
    # Worker processes give the same examples as the main process.
    loader = torch.utils.data.DataLoader(a, batch_size=2, num_workers=2, collate_fn=collate,
                                         worker_init_fn=seed_worker)
    main = torch.utils.data.DataLoader(a, batch_size=2, num_workers=0, collate_fn=collate)
    for x, y in zip(loader, main):
        assert torch.equal(x["target_ray_index"], y["target_ray_index"])
        assert x["source_ids"] == y["source_ids"]
    # Evaluation mode: the stored sources and every target pixel.
    ev = ViewSegDataset([folder], pairs, DatasetConfig(num_sources=2, image_size=(24, 32), resample_sources=False,
                                                       full_target=True))
    e = ev[0]
    assert e["source_ids"] == pairs[0].sources[:2]
    assert torch.equal(e["target_ray_index"], torch.arange(24 * 32))


def test_bad_pairs_are_rejected(scene_and_pairs):
    folder, pairs = scene_and_pairs
    with pytest.raises(ValueError, match="unknown scene"):
        ViewSegDataset([folder], [PairEntry("elsewhere", "000000", ["000001"])])
    with pytest.raises(ValueError, match="no view"):
        ViewSegDataset([folder], [PairEntry(folder.name, "999999", ["000001"])], DatasetConfig(num_sources=1))
    with pytest.raises(ValueError, match="fewer than 4"):
        ViewSegDataset([folder], [PairEntry(folder.name, "000000", ["000001"])])
    assert isinstance(folder, SceneFolder)


def test_perturb_pose_has_the_requested_distribution():
    """Rotation angle ~ |N(0, deg)| about a uniform axis, translation ~ N(0, cm/100) per axis,
    about the camera centre (the rotation never moves the centre)."""
    import cv2

    from viewseg_core.data.dataset import perturb_pose

    rng = np.random.default_rng(0)
    c2w = np.eye(4)
    c2w[:3, :3] = cv2.Rodrigues(np.array([0.2, -0.7, 0.4]))[0]
    c2w[:3, 3] = [1.0, 2.0, -0.5]
    n = 4000
    noisy = np.stack([perturb_pose(c2w, 5.0, 10.0, rng) for _ in range(n)])
    delta = noisy[:, :3, :3] @ c2w[:3, :3].T                   # the world-frame noise rotation
    rotvec = np.degrees(np.stack([cv2.Rodrigues(m)[0][:, 0] for m in delta]))
    angle = np.linalg.norm(rotvec, axis=1)
    # |N(0, s)| has mean s sqrt(2/pi) and second moment s^2.
    assert abs(angle.mean() - 5.0 * np.sqrt(2 / np.pi)) < 0.15
    assert abs(np.sqrt((angle ** 2).mean()) - 5.0) < 0.15
    axes = rotvec / angle[:, None]
    assert np.abs(axes.mean(axis=0)).max() < 0.05             # no preferred axis
    assert np.abs(np.abs(axes).mean(axis=0) - 0.5).max() < 0.03   # uniform on the sphere: E|a_i| = 1/2
    shift = noisy[:, :3, 3] - c2w[:3, 3]
    np.testing.assert_allclose(shift.mean(axis=0), 0.0, atol=0.01)
    np.testing.assert_allclose(shift.std(axis=0), 0.10, rtol=0.05)
    np.testing.assert_allclose(noisy[:, 3], np.broadcast_to([0, 0, 0, 1], (n, 4)))
    np.testing.assert_allclose(noisy[:, :3, :3] @ noisy[:, :3, :3].transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), (n, 3, 3)), atol=1e-12)   # still a rotation
    np.testing.assert_array_equal(perturb_pose(c2w, 0.0, 0.0, rng), c2w)


def test_uniform_pose_noise_spread_scales_each_view_by_u_0_2(scene_and_pairs):
    """spread "uniform": angle = s * |N(0, deg)| with s ~ U(0, 2) per view, so the mean angle is the
    fixed spread's and the second moment is E[s^2] = 4/3 times it; a quarter of the views get
    s < 1/2 (fixed: none). Translation scales alike."""
    import cv2

    from viewseg_core.data.records import View

    folder, pairs = scene_and_pairs
    n, deg, cm = 3000, 5.0, 10.0
    c2w = np.eye(4)
    views = [View(view_id=f"{i:06d}", rgb=np.zeros((2, 2, 3), np.uint8), K=np.eye(3), c2w=c2w)
             for i in range(n)]

    def noise(spread):
        ds = ViewSegDataset([folder], pairs, DatasetConfig(num_sources=2, pose_noise=(deg, cm),
                                                           pose_noise_spread=spread, seed=3))
        poses = np.stack([ds.source_pose(folder.name, v) for v in views])
        angle = np.degrees([np.linalg.norm(cv2.Rodrigues(m[:3, :3])[0]) for m in poses])
        return angle, np.linalg.norm(poses[:, :3, 3], axis=1)

    angle_f, shift_f = noise("fixed")
    angle_u, shift_u = noise("uniform")
    half_normal_mean = deg * np.sqrt(2 / np.pi)
    assert abs(angle_f.mean() - half_normal_mean) < 0.2 and abs(angle_u.mean() - half_normal_mean) < 0.25
    assert abs(np.sqrt((angle_f ** 2).mean()) - deg) < 0.2
    assert abs(np.sqrt((angle_u ** 2).mean()) - deg * np.sqrt(4 / 3)) < 0.25
    # translation: |N(0, cm/100)^3| has second moment 3 (cm/100)^2, times E[s^2] = 4/3 for uniform
    assert abs((shift_f ** 2).mean() - 3 * (cm / 100) ** 2) < 0.003
    assert abs((shift_u ** 2).mean() - 4 * (cm / 100) ** 2) < 0.004
    # the spread shows in the tails: exact-ish and very wrong views are both commoner than fixed
    assert (angle_u < 0.5).mean() > 1.5 * (angle_f < 0.5).mean()
    assert (angle_u > 3 * deg).mean() > 5 * max((angle_f > 3 * deg).mean(), 1e-3)
    with pytest.raises(ValueError, match="pose_noise_spread must be one of fixed | uniform"):
        DatasetConfig(pose_noise=(1.0, 1.0), pose_noise_spread="gaussian")


def test_pose_noise_touches_only_the_source_poses(scene_and_pairs):
    folder, pairs = scene_and_pairs
    base = dict(num_sources=2, image_size=(24, 32), target_rays=64, source_rays=8, seed=5)
    clean = ViewSegDataset([folder], pairs, DatasetConfig(**base))
    noisy = ViewSegDataset([folder], pairs, DatasetConfig(**base, pose_noise=(5.0, 5.0)))
    for index in range(3):
        a, b = clean[index], noisy[index]
        assert a["source_ids"] == b["source_ids"]
        for key in a:
            if key == "source_c2w" or not isinstance(a[key], torch.Tensor):
                continue
            assert torch.equal(a[key].nan_to_num(-1.0), b[key].nan_to_num(-1.0)), key
        moved = (b["source_c2w"][:, :3, 3] - a["source_c2w"][:, :3, 3]).norm(dim=-1)
        assert (moved > 0).all() and (moved < 0.5).all()
    # One keyframe, one wrong pose per epoch: the same view gets the same noise in any example.
    same = {}
    for index in range(len(noisy)):
        ex = noisy[index]
        for view_id, c2w in zip(ex["source_ids"], ex["source_c2w"]):
            if view_id in same:
                assert torch.equal(same[view_id], c2w)
            same[view_id] = c2w
    noisy.set_epoch(1)
    ex = noisy[0]
    assert not torch.equal(ex["source_c2w"], clean[0]["source_c2w"])
    with pytest.raises(ValueError, match="pose_noise"):
        DatasetConfig(pose_noise=(-1.0, 0.0))
    with pytest.raises(ValueError, match="pose_noise"):
        DatasetConfig(pose_noise=(float("nan"), 0.0))
