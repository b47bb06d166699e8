"""RGB-D end to end (issue 15 item 7): a real ROS 2 bag written with rosbags (colour images,
CameraInfo, class-id images, aligned 16UC1 millimetre depth with zeros = no return, /tf) ->
``viewseg bag2scene --depth-topic`` -> a scene folder -> a few training steps of an RGB-D
ViewSeg (``model.source_depth``, ``model.depth_guided``, ``loss.depth_weight``, source depth
from the bag with dropout) -> ``viewseg eval --source-depth clean`` beside CloudSeg with the
same depth and the nearest view."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

rosbags = pytest.importorskip("rosbags")
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from training.checkpoint import load_checkpoint  # noqa: E402
from training.config_io import load_config  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402
from viewseg_core.cli import main as cli_main  # noqa: E402
from viewseg_core.data.scene_folder import SceneFolder  # noqa: E402
from viewseg_core.data.synth import SynthConfig  # noqa: E402
from viewseg_core.data.synth.generate import make_scene, render_views  # noqa: E402
from viewseg_core.model.encoder import build_encoder  # noqa: E402
from viewseg_core.model.weights import save_encoder  # noqa: E402

from .conftest import TINY_OVERRIDES  # noqa: E402

TS = get_typestore(Stores.ROS2_KILTED)
T0 = 1_700_000_000 * 10**9
CONFIG = str(Path(__file__).resolve().parents[2] / "training" / "configs" / "synthetic_small.yaml")
H, W = 30, 40


def _stamp(ns: int):
    return TS.types["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)


def _header(ns: int, frame: str):
    return TS.types["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id=frame)


def _image(array: np.ndarray, encoding: str, ns: int):
    channels = 1 if array.ndim == 2 else array.shape[2]
    row = array.shape[1] * channels * array.dtype.itemsize
    data = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))).view(np.uint8).reshape(-1)
    return TS.types["sensor_msgs/msg/Image"](header=_header(ns, "camera_optical"), height=array.shape[0],
                                             width=array.shape[1], encoding=encoding, is_bigendian=0, step=row,
                                             data=data)


def _camera_info(K: np.ndarray, ns: int):
    types = TS.types
    return types["sensor_msgs/msg/CameraInfo"](
        header=_header(ns, "camera_optical"), height=H, width=W, distortion_model="plumb_bob", d=np.zeros(5),
        k=K.reshape(-1), r=np.eye(3).reshape(-1), p=np.concatenate([K, np.zeros((3, 1))], 1).reshape(-1),
        binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _tf(c2w: np.ndarray, ns: int):
    from viewseg_ros.tf_buffer import matrix_to_quaternion

    types = TS.types
    q = matrix_to_quaternion(c2w[:3, :3])
    transform = types["geometry_msgs/msg/TransformStamped"](
        header=_header(ns, "map"), child_frame_id="camera_optical",
        transform=types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=c2w[0, 3], y=c2w[1, 3], z=c2w[2, 3]),
            rotation=types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))
    return types["tf2_msgs/msg/TFMessage"](transforms=[transform])


def write_rgbd_bag(path: Path, views) -> dict[str, np.ndarray]:
    """Views of a synthetic room as a robot's RGB-D recording at 5 Hz (mcap); returns the
    millimetre depth images written, by view id."""
    written = {}
    rng = np.random.default_rng(0)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = {topic: writer.add_connection(topic, msgtype, typestore=TS) for topic, msgtype in (
            ("/tf", "tf2_msgs/msg/TFMessage"), ("/camera/color/image_raw", "sensor_msgs/msg/Image"),
            ("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo"), ("/camera/semantic", "sensor_msgs/msg/Image"),
            ("/camera/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image"))}
        events = []
        for i, view in enumerate(views):
            ns = T0 + (i + 1) * 200_000_000
            # the pose at the image stamp, bracketed 1 ms either side (interpolation is exact)
            for dt in (-1_000_000, 0, 1_000_000):
                events.append((ns + dt, "/tf", _tf(view.c2w, ns + dt)))
            events.append((ns + 1, "/camera/color/image_raw", _image(view.rgb, "rgb8", ns)))
            events.append((ns + 1, "/camera/color/camera_info", _camera_info(view.K, ns)))
            events.append((ns + 2, "/camera/semantic", _image(view.labels.astype(np.uint8), "mono8", ns)))
            mm = np.where(np.isfinite(view.depth), np.round(view.depth * 1000), 0).astype(np.uint16)
            mm[rng.random(mm.shape) < 0.03] = 0          # no return: scattered pixels...
            mm[:4, :6] = 0                               # ...and a hole
            written[view.view_id] = mm
            events.append((ns + 3, "/camera/aligned_depth_to_color/image_raw", _image(mm, "16UC1", ns + 2_000_000)))
        for ns, topic, msg in sorted(events, key=lambda e: e[0]):
            writer.write(conn[topic], ns, TS.serialize_cdr(msg, conn[topic].msgtype))
    return written


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bag_to_scene_to_rgbd_training_to_eval(tmp_path, capsys):
    from viewseg_core.model.viewseg import ModelConfig
    assert "source_depth" in ModelConfig.__dataclass_fields__, "the RGB-D model option is not there"

    scene, cams = make_scene(5, SynthConfig(views=16, height=H, width=W))
    views = list(render_views(scene, cams, SynthConfig(views=16, height=H, width=W)))
    bag = tmp_path / "rgbd_bag"
    written = write_rgbd_bag(bag, views)

    root = tmp_path / "scenes"
    rc = cli_main(["bag2scene", str(bag), "--out", str(root / "robot_rgbd"), "--image-topic", "/camera/color/image_raw",
                   "--camera-info-topic", "/camera/color/camera_info", "--semantic-topic", "/camera/semantic",
                   "--depth-topic", "/camera/aligned_depth_to_color/image_raw", "--min-translation", "0",
                   "--min-rotation", "0", "--min-interval", "0"])
    assert rc == 0, capsys.readouterr().err
    folder = SceneFolder(root / "robot_rgbd")
    assert len(folder) == len(views)
    for index, view in enumerate(views):
        got = folder.load_view(index)
        np.testing.assert_allclose(got.c2w, view.c2w, atol=1e-6)
        mm = written[view.view_id]
        assert np.isnan(got.depth[mm == 0]).all()                       # 0 mm = unknown
        np.testing.assert_allclose(got.depth[mm > 0], mm[mm > 0] / 1000.0, rtol=1e-6)
        np.testing.assert_array_equal(got.rgb, view.rgb)

    # A few steps of an RGB-D model on it. The bag's depth IS the measurement: source_depth
    # clean passes it through as recorded (sensor would add a second sensor's noise).
    out = tmp_path / "run"
    cfg = load_config(TrainConfig, CONFIG, [
        *TINY_OVERRIDES, f"data.root={root}", f"run.out_dir={out}", "run.max_steps=3", "run.checkpoint_every=3",
        "model.source_depth=true", "model.depth_guided=true", "model.guide_samples=4", "loss.depth_weight=0.1",
        "data.source_depth=clean", "data.source_depth_dropout=0.25"])
    final = train(cfg)
    assert final.is_file()
    ckpt = load_checkpoint(out / "checkpoints" / "step_3.pt")
    assert ckpt["model"]["config"]["source_depth"] is True and ckpt["config"]["data"]["source_depth"] == "clean"
    # every target and source depth term was computed and finite
    from training.data import build_dataset, collate, to_model_batch
    from viewseg_core.model.losses import viewseg_losses
    from viewseg_core.model.weights import load_model
    ds = build_dataset(cfg.data, split="train", seed=0)
    batch = collate([ds[0]])
    assert torch.isfinite(batch["source_depth_input"]).any()
    model = load_model(final).train()
    model_batch, targets = to_model_batch(batch, torch.device("cpu"), cfg.model_config())
    losses = viewseg_losses(model(model_batch), targets, cfg.loss)
    for split in ("target", "source"):
        for name in ("coarse", "fine"):
            assert math.isfinite(float(losses[f"{split}/{name}/depth"].detach())), (split, name)

    # renders (eval, panels) hand the model its source depth: without it, another image
    from training.panels import render_example
    example = build_dataset(cfg.data, split="test", seed=0, full_target=True)[0]
    assert "source_depth_input" in example
    with_depth = render_example(model, example, torch.device("cpu"))
    without = render_example(model, {k: v for k, v in example.items() if k != "source_depth_input"},
                             torch.device("cpu"))
    assert not np.array_equal(np.nan_to_num(with_depth["depth"]), np.nan_to_num(without["depth"]))

    # viewseg eval on the imported scene, the same source depth for every method
    segmenter = save_encoder(build_encoder("deeplabv3plus_resnet18", feature_dim=16).eval(), tmp_path / "seg.pt")
    eval_out = tmp_path / "eval"
    rc = cli_main(["eval", "--checkpoint", str(out / "checkpoints" / "step_3.pt"), "--data", str(root),
                   "--split", "test", "--out", str(eval_out), "--source-depth", "clean", "--baselines",
                   "cloudseg_input", "nearest_view", "--segmenter", str(segmenter), "--max-examples", "2",
                   "--panels", "1", "--threads", "1", "--bootstrap", "20"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((eval_out / "metrics.json").read_text())
    assert list(report["methods"]) == ["viewseg", "cloudseg_input", "nearest_view"]
    assert report["source_depth_mode"] == "clean" and "RGB-D model and reads it" in report["source_depth"]
    assert report["num_examples"] == 2 and set(report["comparisons"]["against"]) == {"cloudseg_input", "nearest_view"}
    # CloudSeg lifting the recorded depth puts its points on the recorded surfaces
    assert report["methods"]["cloudseg_input"]["delta1"] > 0.9
    assert "| ViewSeg RGB-D |" in (eval_out / "metrics.md").read_text()
    # where its samples went is on record: the model's depth guide, blocks to the neighbours
    assert "note: depth guide: splat blocks 2x2 px, widening to reach their neighbours up to 6 px (the model's " \
        "guide_max_footprint)" in (eval_out / "metrics.md").read_text()
