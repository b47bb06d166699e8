"""The ``cameras`` parameter and per-camera topics (viewseg_ros/camera_input.py), without ROS:
namespaces parsed from a string or a list, topics put in each namespace, and the settings that
cannot work refused with the parameter named."""
from __future__ import annotations

import pytest

from viewseg_ros.camera_input import (camera_names, camera_topic, make_camera_inputs, nearest_by_stamp,
                                     parse_camera_namespaces)

PARAMS = {"image_topic": "color/image_raw", "camera_info_topic": "color/camera_info",
          "depth_topic": "aligned_depth_to_color/image_raw", "depth_camera_info_topic": "",
          "image_transport": "compressed", "depth_transport": "raw", "rectification": "auto",
          "image_stamp_offset_s": 0.0}


@pytest.mark.parametrize("value, expected", [
    ("", [""]), ("  ", [""]), ([], [""]),
    ("/front,/rear", ["/front", "/rear"]), ("front rear/", ["front", "rear"]),
    (" /robot/cam_0 , /robot/cam_1 ", ["/robot/cam_0", "/robot/cam_1"]),
    (["/front", "rear"], ["/front", "rear"]),
])
def test_namespaces_from_a_string_or_a_list(value, expected):
    assert parse_camera_namespaces(value) == expected


@pytest.mark.parametrize("value, message", [
    ("/front,/front/", "/front listed twice"),
    ("~/cam", "'~/cam' is not a camera namespace"),
    ("/", "'/' is not a camera namespace"),
])
def test_bad_namespaces_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        parse_camera_namespaces(value)


def test_topics_go_inside_each_namespace_and_the_node_resolves_them():
    cameras = make_camera_inputs(["/front", "rear"], PARAMS, lambda name: name if name.startswith("/")
                                 else "/robot/" + name, arrivals_kept=10)
    front, rear = cameras
    assert front.image_topic == "/front/color/image_raw"
    assert front.image_subscription_topic == "/front/color/image_raw/compressed"
    assert front.depth_topic == "/front/aligned_depth_to_color/image_raw"
    assert front.depth_subscription_topic == front.depth_topic  # depth_transport raw
    assert front.depth_camera_info_topic == ""
    assert rear.camera_info_topic == "/robot/rear/color/camera_info"
    assert (front.label, rear.label) == ("/front", "rear")
    # One camera without a namespace: the topics as given, labelled by the image topic.
    (only,) = make_camera_inputs([""], PARAMS, lambda name: "/" + name, arrivals_kept=10)
    assert only.image_topic == "/color/image_raw" and only.label == "/color/image_raw"


def test_one_camera_overrides_its_own_settings_only():
    """camera.<name>.<setting>: the namespace's last part names the camera; what it sets
    replaces the node's value for it alone, and an error names the per-camera parameter."""
    assert camera_names(["/robot/front", "rear", ""]) == ["front", "rear", ""]
    front, rear = make_camera_inputs(["/robot/front", "/robot/rear"], PARAMS, str, arrivals_kept=10,
                                     overrides={"rear": {"depth_topic": "", "image_transport": "raw",
                                                         "rectification": "none", "image_stamp_offset_s": -0.04}})
    assert front.depth_topic == "/robot/front/aligned_depth_to_color/image_raw" and rear.depth_topic == ""
    assert front.image_subscription_topic.endswith("/compressed") and rear.image_subscription_topic == \
        "/robot/rear/color/image_raw"
    assert (front.rectification_mode, rear.rectification_mode) == ("auto", "none")
    assert (front.stamp_offset_s, rear.stamp_offset_s) == (0.0, -0.04)
    with pytest.raises(ValueError, match="parameter camera.rear.image_topic is '/abs'"):
        make_camera_inputs(["/front", "/rear"], PARAMS, str, 10, overrides={"rear": {"image_topic": "/abs"}})
    with pytest.raises(ValueError, match="several namespaces end in cam"):
        camera_names(["/a/cam", "/b/cam"])
    with pytest.raises(ValueError, match="cannot name its camera"):
        camera_names(["/a/cam-1"])


def test_absolute_topics_cannot_be_put_in_a_namespace():
    assert camera_topic("", "/camera/image", "parameter image_topic") == "/camera/image"
    assert camera_topic("/front", "", "parameter depth_topic") == ""
    with pytest.raises(ValueError, match="parameter image_topic is '/camera/image'.*relative"):
        camera_topic("/front", "/camera/image", "parameter image_topic")


def test_arrivals_are_counted_per_camera_within_the_window():
    (camera,) = make_camera_inputs([""], PARAMS, str, arrivals_kept=3)
    for t in (1.0, 2.0, 3.0, 4.0):
        camera.arrived("image", now=t)
    assert camera.received["image"] == 4          # since start
    assert camera.count_since("image", 1.5, now=4.0) == 2
    assert camera.count_since("image", 10.0, now=4.0) == 3  # only arrivals_kept are kept


def test_nearest_by_stamp_pairs_within_the_tolerance_and_says_whether_to_wait():
    items = [(100, "a"), (200, "b"), (260, "c")]
    assert nearest_by_stamp(items, 210, 20) == ((200, "b"), False)       # the nearest, ties to neither
    assert nearest_by_stamp(items, 240, 30) == ((260, "c"), False)
    assert nearest_by_stamp(items, 150, 20) == (None, False)              # 260 arrived past the window: none will
    assert nearest_by_stamp(items, 300, 20) == (None, True)               # nothing past 320 yet: it may still come
    assert nearest_by_stamp([], 5, 1) == (None, True)
