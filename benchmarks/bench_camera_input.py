"""What a real camera's frames cost the node before they are keyframes: decoding, undistortion, registration.

The node converts every received colour frame (and pairs its depth) at the camera's rate; it
undistorts (``rectification``) and registers unaligned depth (``depth_camera_info_topic``)
only for the frames the keyframe rule admits. This times each step on one synthetic frame of
``--size`` (default 640x480, what a robot camera sends), median of ``--repeats`` runs, one
thread, and gives each against the plain path of the same run, what the node does with a
frame of an rgb8 camera with registered depth: rgb8 -> RGB and the area resize to the
model's 80x60 working size for colour, 16UC1 -> metres and the nearest resize for depth;
and as the share of one core it takes at 15 frames per second.

Rows (the ``input`` column):

- colour decoding: ``rgb8``, ``bgr8``, ``yuv422_yuy2``, ``bayer_rggb8``,
  ``compressed jpeg`` (quality 90) and ``compressed png`` (viewseg_ros.conversions);
- depth decoding: ``compressedDepth png``;
- per admitted keyframe: ``undistort colour`` and ``undistort depth`` (plumb_bob -0.3, 0.1,
  viewseg_core.rectify), ``register depth -> WxH`` into the colour camera at the model's
  80x60 working size and at full size (viewseg_core.depth_registration, 5 cm baseline).

A dated row per input, with the CPU name, is appended to the "Camera input" section of
docs/benchmarks.md (``--no-record`` to skip).

    python benchmarks/bench_camera_input.py --quick     # a few seconds
    python benchmarks/bench_camera_input.py             # 640x480, 30 repeats
"""
from __future__ import annotations

import argparse
import datetime as _dt
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # report.py, also when loaded by path

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from report import add_record_arguments, cpu_name, median_ms, print_and_record  # noqa: E402  (benchmarks/report.py)
from viewseg_core.cameras import K_from_hfov, resize_intrinsics  # noqa: E402
from viewseg_core.depth_registration import register_depth  # noqa: E402
from viewseg_core.rectify import make_undistorter  # noqa: E402
from viewseg_ros.conversions import any_depth_to_metres, colour_image_to_numpy  # noqa: E402

SECTION = "## Camera input (viewseg_ros/conversions.py, viewseg_core/rectify.py, depth_registration.py)"
INTRO = ("`python benchmarks/bench_camera_input.py [--quick]` times what a real camera's frames cost "
         "the node before they become keyframes, on one synthetic frame, one thread, median of the "
         "repeats. Decoding runs for every received frame; undistortion and registration only for "
         "admitted keyframes. `vs plain` is the row's time over the same run's plain path, what the node "
         "does with a frame of an rgb8 camera with registered depth (rgb8 -> RGB + area resize to 80x60 for "
         "colour rows; 16UC1 -> metres + nearest resize for depth rows); `core at 15 Hz` the share of one "
         "core the step takes at a camera's 15 frames per second.\n\n")
TABLE_HEADER = ("| date | CPU | size | input | ms per frame | vs plain | core at 15 Hz |\n"
                "|---|---|---|---|---|---|---|\n")
WORKING_SIZE = (60, 80)  # (height, width): the demo model's source size


def _image(array: np.ndarray, encoding: str) -> SimpleNamespace:
    """A duck-typed sensor_msgs/Image, as the node's readers take it."""
    row = array[0].nbytes
    return SimpleNamespace(height=array.shape[0], width=array.shape[1], encoding=encoding, step=row,
                           is_bigendian=0, data=np.ascontiguousarray(array).tobytes())


def _compressed(fmt: str, payload: bytes) -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=payload)


def measure(width: int, height: int, repeats: int) -> list[tuple[str, str, float]]:
    """[(kind, input, ms)] for every row; kind "colour" or "depth" picks the reference."""
    rng = np.random.default_rng(0)
    # A smooth image with texture, so the codecs see something camera-like (noise defeats PNG).
    v, u = np.mgrid[0:height, 0:width]
    rgb = np.stack([(127 + 100 * np.sin(u / 23.0 + c) * np.cos(v / 17.0)) for c in range(3)], -1).astype(np.uint8)
    rgb = np.clip(rgb.astype(int) + rng.integers(-4, 5, rgb.shape), 0, 255).astype(np.uint8)
    metres = (2.0 + np.sin(u / 40.0) + 0.5 * (v / height)).astype(np.float32)
    mm = np.round(metres * 1000).astype(np.uint16)
    yuyv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
    packed = np.empty((height, width, 2), np.uint8)   # Y0 U Y1 V
    packed[:, :, 0] = yuyv[:, :, 0]
    packed[:, 0::2, 1], packed[:, 1::2, 1] = yuyv[:, 0::2, 1], yuyv[:, 0::2, 2]
    bayer = rgb[:, :, 1].copy()
    bayer[0::2, 0::2], bayer[1::2, 1::2] = rgb[0::2, 0::2, 0], rgb[1::2, 1::2, 2]
    jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    png = cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()
    depth_png = struct.pack("<iff", 0, 0.0, 0.0) + cv2.imencode(".png", mm)[1].tobytes()
    K = K_from_hfov(70.0, width, height)
    undistorter = make_undistorter(K, [-0.3, 0.1, 0.0, 0.0, 0.0], "plumb_bob", width, height, K)
    colour_from_depth = np.eye(4)
    colour_from_depth[0, 3] = 0.05
    small_K = resize_intrinsics(K, (height, width), WORKING_SIZE)
    messages = {"rgb8": _image(rgb, "rgb8"), "bgr8": _image(rgb[:, :, ::-1], "bgr8"),
                "yuv422_yuy2": _image(packed, "yuv422_yuy2"), "bayer_rggb8": _image(bayer, "bayer_rggb8"),
                "compressed jpeg": _compressed("rgb8; jpeg compressed bgr8", jpeg),
                "compressed png": _compressed("rgb8; png compressed bgr8", png)}
    working_wh = (WORKING_SIZE[1], WORKING_SIZE[0])
    rows = [("colour", "plain: rgb8 + resize", median_ms(lambda: cv2.resize(
        colour_image_to_numpy(messages["rgb8"]), working_wh, interpolation=cv2.INTER_AREA), repeats))]
    rows += [("colour", name, median_ms(lambda m=msg: colour_image_to_numpy(m), repeats))
             for name, msg in messages.items()]
    rows.append(("depth", "plain: 16UC1 + resize", median_ms(lambda: cv2.resize(
        any_depth_to_metres(_image(mm, "16UC1")), working_wh, interpolation=cv2.INTER_NEAREST), repeats)))
    rows.append(("depth", "compressedDepth png",
                 median_ms(lambda: any_depth_to_metres(_compressed("16UC1; compressedDepth png", depth_png)), repeats)))
    rows.append(("colour", "undistort colour", median_ms(lambda: undistorter.colour(rgb), repeats)))
    rows.append(("depth", "undistort depth", median_ms(lambda: undistorter.depth(metres), repeats)))
    rows.append(("depth", f"register depth -> {WORKING_SIZE[1]}x{WORKING_SIZE[0]}",
                 median_ms(lambda: register_depth(metres, K, small_K, WORKING_SIZE, colour_from_depth), repeats)))
    rows.append(("depth", f"register depth -> {width}x{height}",
                 median_ms(lambda: register_depth(metres, K, K, (height, width), colour_from_depth), repeats)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="160x120, 3 repeats (for tests)")
    parser.add_argument("--size", default="640x480", help="frame WxH")
    parser.add_argument("--repeats", type=int, default=30)
    add_record_arguments(parser)
    args = parser.parse_args(argv)
    width, height = (160, 120) if args.quick else (int(v) for v in args.size.lower().split("x"))
    repeats = 3 if args.quick else args.repeats
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rows = measure(width, height, repeats)
    plain = {kind: ms for kind, name, ms in rows if name.startswith("plain")}
    date, cpu = _dt.date.today().isoformat(), cpu_name()
    lines = [f"| {date} | {cpu} | {width}x{height} | {name} | {ms:.2f} | {ms / plain[kind]:.1f}x | "
             f"{ms * 15 / 1e3:.1%} |\n" for kind, name, ms in rows]
    print_and_record(args, SECTION, TABLE_HEADER, lines, intro=INTRO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
