"""`viewseg show-scene` (viewseg_core/data/scene_sheet.py) on a hand-made scene folder: the
summary's numbers, the map's geometry and the sheet's layout, checked by hand."""
from __future__ import annotations

import numpy as np
import pytest

from viewseg_core.cli import main
from viewseg_core.data.records import View
from viewseg_core.data.scene_folder import SceneFolder, write_scene_folder
from viewseg_core.data.scene_sheet import (CAMERA_COLOURS, contact_sheet, frame_indices, ground_axes, scene_summary,
                                           top_down_map)

K = np.array([[20.0, 0.0, 7.5], [0.0, 20.0, 5.5], [0.0, 0.0, 1.0]])
# Camera centres on a z-up floor plan (a ROS map): 1 m apart, then 1 m to the left.
CENTRES = [(0.0, 0.0, 1.2), (1.0, 0.0, 1.2), (2.0, 0.0, 1.2), (2.0, 1.0, 1.2)]


def looking_along_x(centre) -> np.ndarray:
    """Optical frame at ``centre``: z (optical axis) = +x, y (image down) = -z, x = -y."""
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2] = (0.0, -1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)
    c2w[:3, 3] = centre
    return c2w


@pytest.fixture
def folder(tmp_path) -> SceneFolder:
    views = []
    for i, centre in enumerate(CENTRES):
        depth = None
        if i < 3:
            depth = np.full((12, 16), 1.0 + i, np.float32)
            depth[0, : 4 * i] = np.nan                       # 0, 4 and 8 unknown pixels
        labels = np.zeros((12, 16), np.uint8) if i == 0 else None
        views.append(View(rgb=np.full((12, 16, 3), 60 * i, np.uint8), K=K, c2w=looking_along_x(centre), depth=depth,
                          labels=labels, view_id=f"{i:03d}", stamp=10.0 + i,
                          meta={"camera": "/front" if i % 2 == 0 else "/rear"}))
    return write_scene_folder(tmp_path / "kf", views, meta={"fixed_frame": "map", "source": "test"})


def test_summary_by_hand(folder):
    s = scene_summary(folder)
    assert s["frames"] == 4 and s["cameras"] == {"/front": 2, "/rear": 2} and s["sizes"] == {"16x12": 4}
    assert s["with_depth"] == 3 and s["with_labels"] == 1
    assert s["depth_known"] == pytest.approx((3 * 192 - 12) / (3 * 192))
    assert s["path_length"] == pytest.approx(3.0) and np.allclose(s["extent"], [2.0, 1.0, 0.0])
    assert s["stamps"] == (10.0, 13.0) and s["fixed_frame"] == "map" and s["source"] == "test"
    assert s["depth_range"][0] == pytest.approx(1.0) and s["depth_range"][1] == pytest.approx(3.0)


def test_the_map_is_drawn_from_above(folder):
    c2w = np.stack([looking_along_x(c) for c in CENTRES])
    up, axes = ground_axes(c2w)
    np.testing.assert_allclose(up, [0.0, 0.0, 1.0], atol=1e-12)       # image up is world +z
    np.testing.assert_allclose(axes[1], [1.0, 0.0, 0.0], atol=1e-12)  # the map's "up": where they look
    image, projection = top_down_map(folder, size=200, margin=20)
    pixels = projection(np.array(CENTRES))
    # 1 m apart in the world: `scale` pixels apart on the map; looking along +x = up the image.
    assert np.linalg.norm(pixels[1] - pixels[0]) == pytest.approx(projection.scale)
    assert pixels[1][1] < pixels[0][1] and pixels[1][0] == pytest.approx(pixels[0][0])
    # The fourth camera is 1 m to the left (+y) of the third: left on the map.
    assert pixels[3][0] < pixels[2][0]
    assert projection.scale == pytest.approx((200 - 40) / 2.0)        # the 2 m span fills the map
    for i, p in enumerate(pixels):
        colour = CAMERA_COLOURS[i % 2]                                    # /front first, then /rear
        assert tuple(image[int(round(p[1])), int(round(p[0]))]) == colour


def test_contact_sheet_layout():
    assert frame_indices(10, 4) == [0, 3, 6, 9] and frame_indices(3, 5) == [0, 1, 2] and frame_indices(7, 1) == [0]


def test_contact_sheet_rows(folder):
    sheet = contact_sheet(folder, max_frames=4, per_row=2, tile_height=40)
    # Two rows of 40 px tiles under 18 px titles, 4 px apart.
    assert sheet.shape[0] == 2 * (40 + 18) + 4 and sheet.dtype == np.uint8


def test_show_scene_writes_pictures_and_never_into_the_folder(folder, tmp_path, capsys):
    out = tmp_path / "pictures"
    assert main(["show-scene", str(folder.root), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 frames from test, poses in 'map'" in text and "path 3.00 m" in text
    assert (out / "frames.png").is_file() and (out / "cameras.png").is_file()
    assert main(["show-scene", str(folder.root), "--out", str(folder.root / "sheet")]) == 2
    assert "inside the scene folder" in capsys.readouterr().err and not (folder.root / "sheet").exists()
    assert main(["show-scene", str(tmp_path / "missing")]) == 2
