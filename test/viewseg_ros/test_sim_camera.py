"""The simulated camera's depth topic (issue 15, item 6), with a real rclpy node on loopback:
depth registered to the image (same stamp, frame and size), 16UC1 millimetres, equal to the
ray-cast truth when the sensor model is off and within its noise when it is on."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

import rclpy  # noqa: E402,F401  (a missing rclpy must fail, not skip)
from rclpy.qos import qos_profile_sensor_data  # noqa: E402

from viewseg_ros.conversions import depth_image_to_metres, time_to_ns  # noqa: E402
from ros_graph import Graph, params, wait_for  # noqa: E402

W, H = 64, 48


def frames_from(sensor: bool, count: int = 3):
    """(sim node, [(image msg, depth msg)] pairs with equal stamps)."""
    from sensor_msgs.msg import Image

    from viewseg_ros.sim_camera import SimCameraNode

    g = Graph()
    try:
        sim = g.add(SimCameraNode(context=g.context, namespace=f"sim_{int(sensor)}", parameter_overrides=params({
            "seed": 2, "rate": 5.0, "width": W, "height": H, "depth_sensor": sensor})))
        images, depths = [], []
        g.client.create_subscription(Image, f"/sim_{int(sensor)}/image", images.append, qos_profile_sensor_data)
        g.client.create_subscription(Image, f"/sim_{int(sensor)}/depth", depths.append, qos_profile_sensor_data)
        wait_for(lambda: len(depths) >= count and len(images) >= count, 20.0, "sim frames")
        sim.timer.cancel()
        by_stamp = {time_to_ns(m.header.stamp): m for m in images}
        return sim, [(by_stamp[time_to_ns(d.header.stamp)], d) for d in depths if time_to_ns(d.header.stamp) in by_stamp]
    finally:
        g.close()


def truth(sim, stamp_ns: int) -> np.ndarray:
    from viewseg_core.data.synth.render import render

    return render(sim.scene, sim.K, sim.pose_at(stamp_ns), H, W).depth


def test_clean_depth_is_registered_millimetres_of_the_true_depth():
    sim, pairs = frames_from(sensor=False)
    assert pairs
    for image, depth_msg in pairs:
        assert depth_msg.encoding == "16UC1" and depth_msg.header.frame_id == image.header.frame_id
        assert (depth_msg.width, depth_msg.height) == (image.width, image.height) == (W, H)
        measured = depth_image_to_metres(depth_msg)
        true = truth(sim, time_to_ns(depth_msg.header.stamp))
        both = np.isfinite(true) & (true < 65.0)
        assert both.mean() > 0.9
        np.testing.assert_allclose(measured[both], np.round(true[both] * 1000) / 1000, atol=1e-6)


def test_sensor_depth_is_noisy_within_its_model():
    from viewseg_core.data.depth_sensor import DepthSensorConfig

    k = DepthSensorConfig().noise_k
    sim, pairs = frames_from(sensor=True)
    errors, missing = [], []
    for _, depth_msg in pairs:
        measured = depth_image_to_metres(depth_msg)
        true = truth(sim, time_to_ns(depth_msg.header.stamp))
        ok = np.isfinite(true) & np.isfinite(measured)
        errors.append((measured[ok] - true[ok]) / (k * true[ok] ** 2 + 1e-3))
        missing.append(np.isfinite(true) & ~np.isfinite(measured))
    z = np.concatenate(errors)
    # Gaussian noise sigma = k z^2 plus millimetre steps: a normalised error with std ~1,
    # never far beyond a few sigma; and the sensor loses some pixels (holes, edges), not most.
    assert 0.3 < z.std() < 1.5 and np.abs(z).max() < 8
    assert 0.0 < np.concatenate([m.ravel() for m in missing]).mean() < 0.3


def test_sigint_while_a_frame_is_being_rendered_exits_cleanly(tmp_path):
    """Frames slower than the timer keep a tick running all the time, so SIGINT lands inside
    one and the frame's publish meets a shut-down context: that is the requested stop (status
    0, no traceback), as `ros2 launch` needs (a launch test once failed on it)."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(random.randint(150, 230)))
    log = tmp_path / "sim.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "viewseg_ros.sim_camera", "--ros-args", "-p", "rate:=50.0",
                                 "-p", "width:=320", "-p", "height:=240"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "replaying" in log.read_text() or proc.poll() is not None, 60.0, "the sim camera to start")
        time.sleep(1.0)  # several ticks, each longer than the 20 ms period
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert status == 0 and "Traceback" not in text, text
