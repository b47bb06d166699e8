"""Keeping keyframes across restarts (real rclpy nodes on loopback): ~/save_keyframes writes
the buffer, ~/clear_keyframes empties it, ~/load_keyframes and ``keyframes.load_path`` bring it
back, and a query afterwards renders the same images as before, bit for bit (the same images
and depth, encoded again by the same encoder). Bad requests change nothing and say why."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)

from viewseg_ros.conversions import image_to_numpy  # noqa: E402
from ros_graph import Graph, WallWalk, diagnostics_values, params, render_request, resend, wait_for  # noqa: E402

W, H = WallWalk.W, WallWalk.H
VIEWS = 4
pose = WallWalk.pose


def node_params(checkpoint, **extra) -> list:
    return params({"checkpoint": str(checkpoint), "device": "cpu", "depth_topic": "depth", "keyframes.width": W,
                   "keyframes.height": H, "diagnostics_period_s": 0.2, "query.min_coverage": 0.0, **extra})


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    with WallWalk.rig(tmp_path_factory.mktemp("store"), "store", views=VIEWS, diagnostics=True,
                      diagnostics_period_s=0.2) as g:
        yield g


def _images(response) -> dict[str, np.ndarray]:
    assert response.success, response.message
    return {name: image_to_numpy(getattr(response, name)) for name in ("semantic", "depth", "confidence")}


def _query(g: Graph, namespace: str = "/store") -> dict[str, np.ndarray]:
    return _images(g.call(f"{namespace}/viewseg/render_view", render_request(pose(2) @ _back(0.5), width=W, height=H)))


def _back(metres: float) -> np.ndarray:
    T = np.eye(4)
    T[2, 3] = -metres
    return T


def _save(g: Graph, path, namespace: str = "/store"):
    from viewseg_interfaces.srv import SaveKeyframes

    return g.call(f"{namespace}/viewseg/save_keyframes", SaveKeyframes.Request(path=str(path)), srv_type=SaveKeyframes)


def _load(g: Graph, path, replace: bool, namespace: str = "/store"):
    from viewseg_interfaces.srv import LoadKeyframes

    return g.call(f"{namespace}/viewseg/load_keyframes", LoadKeyframes.Request(path=str(path), replace=replace),
                  srv_type=LoadKeyframes)


def _clear(g: Graph, namespace: str = "/store"):
    from std_srvs.srv import Trigger

    return g.call(f"{namespace}/viewseg/clear_keyframes", Trigger.Request(), srv_type=Trigger)


def _equal(a: dict, b: dict) -> None:
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_save_clear_load_renders_the_same_images(rig, tmp_path):
    before = _query(rig)
    kept = [(k.view.c2w.copy(), k.stamp_ns) for k in rig.node.keyframes.snapshot()]
    response = _save(rig, tmp_path / "house")
    assert response.success and response.count == VIEWS and f"saved {VIEWS} keyframes" in response.message
    doc = json.loads((tmp_path / "house" / "cameras.json").read_text())
    assert doc["meta"]["fixed_frame"] == "map" and len(doc["frames"]) == VIEWS
    assert all(f["depth"] for f in doc["frames"])

    from geometry_msgs.msg import PoseArray
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    shown = []   # ~/keyframe_poses, latched: what RViz shows
    rig.client.create_subscription(PoseArray, "/store/viewseg/keyframe_poses", shown.append, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    wait_for(lambda: shown and len(shown[-1].poses) == VIEWS, 5.0, "the kept keyframes on ~/keyframe_poses")
    response = _clear(rig)
    assert response.success and response.message == f"cleared {VIEWS} keyframes" and len(rig.node.keyframes) == 0
    empty = rig.call("/store/viewseg/render_view", render_request(pose(2), width=W, height=H))
    assert not empty.success and f"cleared {VIEWS} keyframes (~/clear_keyframes)" in empty.message
    wait_for(lambda: len(shown[-1].poses) == 0, 5.0, "an empty ~/keyframe_poses after the clear")

    response = _load(rig, tmp_path / "house", replace=True)
    assert response.success and response.count == VIEWS, response.message
    assert f"loaded {VIEWS} keyframes ({VIEWS} with depth)" in response.message
    restored = rig.node.keyframes.snapshot()
    for (c2w, stamp_ns), keyframe in zip(kept, restored):
        np.testing.assert_array_equal(keyframe.view.c2w, c2w)
        assert keyframe.stamp_ns == stamp_ns and keyframe.stream == rig.node.cameras[0].label
    _equal(_query(rig), before)

    # Loading again without replace adds nothing: every saved pose is kept already.
    response = _load(rig, tmp_path / "house", replace=False)
    assert response.success and response.count == 0 and len(rig.node.keyframes) == VIEWS
    assert f"({VIEWS} skipped: a kept keyframe has their pose)" in response.message
    values = diagnostics_values(rig, until=lambda v: v.get("keyframe_loads") == "2")
    assert values["keyframe_saves"] == "1" and values["keyframes_restored"] == str(VIEWS)
    assert values["keyframe_clears"] == "1"


def test_bad_requests_leave_the_buffer_as_it_was(rig, tmp_path):
    count = len(rig.node.keyframes)
    assert count > 0
    response = _load(rig, tmp_path / "nowhere", replace=True)
    assert not response.success and "does not exist" in response.message and len(rig.node.keyframes) == count
    odom = tmp_path / "odom_save"
    assert _save(rig, odom).success
    doc = json.loads((odom / "cameras.json").read_text())
    doc["meta"]["fixed_frame"] = "odom"
    (odom / "cameras.json").write_text(json.dumps(doc))
    response = _load(rig, odom, replace=True)
    assert not response.success and "'odom'" in response.message and len(rig.node.keyframes) == count
    first = doc["frames"][0]["rgb"]
    (odom / first).write_bytes(b"not a png")
    doc["meta"]["fixed_frame"] = "map"
    (odom / "cameras.json").write_text(json.dumps(doc))
    response = _load(rig, odom, replace=True)
    assert not response.success and first.split("/")[-1].split(".")[0] in response.message
    assert len(rig.node.keyframes) == count
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    response = _save(rig, notes)
    assert not response.success and "not a folder" in response.message and notes.read_text() == "not a folder"
    for call in (lambda: _save(rig, ""), lambda: _load(rig, "  ", replace=True)):
        response = call()
        assert not response.success and "empty path" in response.message


def test_a_new_node_starts_with_the_saved_keyframes(rig, tmp_path):
    from viewseg_ros.node import ViewSegNode

    before = _query(rig)
    assert _save(rig, tmp_path / "house").success
    restarted = rig.add(ViewSegNode(context=rig.context, namespace="restarted", parameter_overrides=node_params(
        rig.checkpoint, **{"keyframes.load_path": str(tmp_path / "house")})))
    assert len(restarted.keyframes) == len(rig.node.keyframes)
    # No camera has published to it: the restored keyframes alone answer, as the first node did.
    _equal(_query(rig, "/restarted"), before)
    with pytest.raises(ValueError, match="keyframes.load_path: keyframe folder .* does not exist"):
        ViewSegNode(context=rig.context, namespace="broken", parameter_overrides=node_params(
            rig.checkpoint, **{"keyframes.load_path": str(tmp_path / "missing")}))


def test_a_live_view_replaces_the_restored_keyframe_of_its_pose(rig, tmp_path):
    """refresh_after_s is unset (0), yet a live frame at a restored keyframe's pose is admitted
    and takes its place: the live image shows the room as it is now."""
    assert _save(rig, tmp_path / "house").success
    assert _load(rig, tmp_path / "house", replace=True).success
    assert all(k.restored for k in rig.node.keyframes.snapshot()) and rig.node.params["keyframes.refresh_after_s"] == 0
    old = next(k for k in rig.node.keyframes.snapshot() if np.allclose(k.c2w, pose(2)))
    stamp = 5000 * 10**9
    assert resend(lambda attempt: rig.camera.publish(pose(2), stamp + attempt * 10**9, depth=WallWalk.depth(2)),
                  lambda: old.id not in rig.node.keyframes, "a live view to replace the restored one")
    live = [k for k in rig.node.keyframes.snapshot() if not k.restored]
    assert len(live) == 1 and np.allclose(live[0].c2w, pose(2)) and live[0].stamp_ns >= stamp
    assert len(rig.node.keyframes) == VIEWS


def test_a_folder_of_another_size_is_resized_to_the_working_size(rig, tmp_path):
    """Keyframes saved at 64x48 (another node, or bag2scene at the camera's size) load at the
    node's 32x24: colour by area, K scaled, depth nearest."""
    from viewseg_core.cameras import resize_intrinsics
    from viewseg_core.data.records import View
    from viewseg_ros.keyframe_store import save_keyframes
    from viewseg_ros.keyframes import Keyframe

    big_K = WallWalk.K() * np.array([[2.0], [2.0], [1.0]])
    big_K[:2, 2] = [31.5, 23.5]
    depth = np.full((48, 64), 3.0, np.float32)
    depth[:, 32:] = 5.0
    c2w = pose(7)
    folder = save_keyframes([Keyframe(0, 0, View(rgb=np.full((48, 64, 3), 90, np.uint8), K=big_K, c2w=c2w,
                                                 depth=depth))], tmp_path / "big", "map")
    assert _load(rig, folder, replace=False).success
    keyframe = next(k for k in rig.node.keyframes.snapshot() if np.allclose(k.c2w, c2w))
    assert keyframe.view.rgb.shape == (H, W, 3) and keyframe.view.depth.shape == (H, W)
    np.testing.assert_allclose(keyframe.view.K, resize_intrinsics(big_K, (48, 64), (H, W)))
    assert set(np.unique(keyframe.view.depth[:, :16])) == {3.0} and set(np.unique(keyframe.view.depth[:, 16:])) == {5.0}


def test_keyframes_are_saved_periodically_while_they_change(rig, tmp_path):
    """keyframes.save_path: the node saves there while its keyframes change (here every 0.2 s,
    starting with the keyframes it loaded), never an empty buffer over a good save."""
    from viewseg_ros.node import ViewSegNode

    assert _save(rig, tmp_path / "house").success
    auto = tmp_path / "auto"
    saving = rig.add(ViewSegNode(context=rig.context, namespace="autosave", parameter_overrides=node_params(
        rig.checkpoint, **{"keyframes.load_path": str(tmp_path / "house"), "keyframes.save_path": str(auto),
                           "keyframes.save_period_s": 0.2})))
    count = len(saving.keyframes)

    def saved() -> int:
        try:
            return len(json.loads((auto / "cameras.json").read_text())["frames"])
        except (OSError, ValueError):
            return -1

    wait_for(lambda: saved() == count, 10.0, "the first periodic save")
    assert _clear(rig, "/autosave").success and len(saving.keyframes) == 0
    saves = saving.events["keyframe_saves"]
    time.sleep(0.6)                                      # three periods with an empty buffer
    assert saved() == count and saving.events["keyframe_saves"] == saves


def test_the_node_saves_its_keyframes_when_it_stops(rig, tmp_path, ros_subprocess_env):
    """The viewseg_node process: SIGINT after "ready" leaves keyframes.save_path holding the
    keyframes it kept (here the ones it started with), with save_period_s 0 (only at stop)."""
    assert _save(rig, tmp_path / "house").success
    expected = len(json.loads((tmp_path / "house" / "cameras.json").read_text())["frames"])
    out = tmp_path / "at_stop"
    proc = subprocess.Popen([sys.executable, "-m", "viewseg_ros.node", "--ros-args", "-r", "__ns:=/stopping",
                             "-p", f"checkpoint:={rig.checkpoint}", "-p", "device:=cpu", "-p", "depth_topic:=depth",
                             "-p", f"keyframes.width:={W}", "-p", f"keyframes.height:={H}",
                             "-p", f"keyframes.load_path:={tmp_path / 'house'}", "-p", f"keyframes.save_path:={out}",
                             "-p", "keyframes.save_period_s:=0.0"],
                            env=ros_subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            lines.append(line)
            if "ready:" in line or time.monotonic() > deadline:
                break
        assert any("ready:" in line for line in lines), "".join(lines)
        assert not out.exists()                          # period 0: nothing saved while running
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    assert f"saved {expected} keyframes to {out} (at stop)" in rest, rest
    assert len(json.loads((out / "cameras.json").read_text())["frames"]) == expected
