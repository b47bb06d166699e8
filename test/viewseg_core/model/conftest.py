"""Fixtures for the model tests: a tiny analytic box room and a small CPU model config.

The room is rendered by exact ray-box intersection (no dependence on the data package), so
labels, colours and planar depth are ground truth to float precision.
"""
from __future__ import annotations


import pytest
import torch

from viewseg_core.cameras import pixel_grid, pixels_to_rays
from viewseg_core.model.viewseg import ModelConfig

# World frame: y points down (like the OpenCV camera frame), the room is an axis-aligned box.
ROOM_MIN = torch.tensor([-2.0, -1.0, -2.5])
ROOM_MAX = torch.tensor([2.0, 1.0, 2.5])
# A table-like box standing on the floor (y = +1).
OBJ_MIN = torch.tensor([0.4, 0.3, 0.9])
OBJ_MAX = torch.tensor([1.4, 1.0, 1.9])
# Class per room face (-x, +x, -y = ceiling, +y = floor, -z, +z) and for the object.
FACE_CLASSES = torch.tensor([0, 8, 21, 1, 7, 10])      # wall, window, ceiling, floor, door, picture
OBJ_CLASS = 6                                           # table
FACE_COLORS = torch.tensor([[0.8, 0.3, 0.3], [0.3, 0.8, 0.3], [0.9, 0.9, 0.9],
                            [0.5, 0.35, 0.2], [0.3, 0.3, 0.8], [0.8, 0.8, 0.2]])
OBJ_COLOR = torch.tensor([0.2, 0.7, 0.8])


def look_at(position, target) -> torch.Tensor:
    """c2w [4, 4] of an OpenCV camera at ``position`` looking at ``target``, image-down ~ world +y."""
    pos, tgt = torch.as_tensor(position, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)
    z = torch.nn.functional.normalize(tgt - pos, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), z), dim=0)
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.stack([x, torch.linalg.cross(z, x), z], dim=1)
    c2w[:3, 3] = pos
    return c2w


def intrinsics(height: int, width: int, focal: float) -> torch.Tensor:
    return torch.tensor([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])


def render_room(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int):
    """Exact RGB [H, W, 3] in [0, 1], labels [H, W] int64 and planar depth [H, W] of the room."""
    uv = pixel_grid(height, width)
    o, d = pixels_to_rays(K, c2w, uv)                                  # [N, 3]
    safe = torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    # Exit of the room (the camera is inside): nearest positive wall along each axis.
    t_axes = torch.where(d > 0, (ROOM_MAX - o) / safe, (ROOM_MIN - o) / safe)  # [N, 3]
    t_room, axis = t_axes.min(-1)
    face = 2 * axis + (d.gather(-1, axis[:, None])[:, 0] > 0).long()
    labels, color = FACE_CLASSES[face], FACE_COLORS[face]
    # Slab test for the object box.
    t1, t2 = (OBJ_MIN - o) / safe, (OBJ_MAX - o) / safe
    t_in, t_out = torch.minimum(t1, t2).max(-1).values, torch.maximum(t1, t2).min(-1).values
    hit = (t_in <= t_out) & (t_in > 0) & (t_in < t_room)
    t = torch.where(hit, t_in, t_room)
    labels = torch.where(hit, OBJ_CLASS, labels)
    color = torch.where(hit[:, None], OBJ_COLOR, color)
    # A 0.5 m checker texture, so that colours and features vary along every surface.
    p = o + t[:, None] * d
    checker = (torch.floor(p / 0.5).sum(-1) % 2)[:, None]
    rgb = color * (0.65 + 0.35 * checker)
    depth = t * (d @ c2w[:3, 2])                                      # planar: along the optical axis
    return rgb.reshape(height, width, 3), labels.reshape(height, width), depth.reshape(height, width)


class BoxRoom:
    """Four overlapping source views of the far corner (with the table) and two target views
    between them, as pair mining would choose them (shared content, different poses)."""

    SOURCES = [((-1.2, -0.2, -1.5), (0.6, 0.4, 1.8)), ((1.4, 0.1, -1.2), (0.6, 0.4, 1.8)),
               ((-1.5, 0.3, 0.2), (0.9, 0.2, 2.0)), ((0.2, -0.4, -2.0), (0.3, 0.5, 1.5))]
    TARGETS = [((0.0, 0.0, -1.0), (0.9, 0.5, 1.2)), ((1.2, -0.3, -0.3), (0.0, 0.3, 2.5))]

    def __init__(self, height: int = 24, width: int = 32, focal: float = 18.0) -> None:
        self.height, self.width = height, width
        self.K = intrinsics(height, width, focal)
        self.source_c2w = torch.stack([look_at(p, t) for p, t in self.SOURCES])
        self.target_c2w = torch.stack([look_at(p, t) for p, t in self.TARGETS])
        self.source = [render_room(self.K, c, height, width) for c in self.source_c2w]
        self.target = [render_room(self.K, c, height, width) for c in self.target_c2w]

    def source_rgb(self) -> torch.Tensor:
        """[1, 4, 3, H, W]."""
        return torch.stack([r for r, _, _ in self.source]).permute(0, 3, 1, 2)[None]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run these small-tensor tests on one intra-op thread, then restore the setting.

    Their ops are tiny, so a second thread buys nothing, and on a busy 2-core machine two
    OpenMP threads thrash: the quick overfit test took 57 s with 2 threads and 8 s with 1
    under the same load.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def box_room() -> BoxRoom:
    return BoxRoom()


def tiny_config(**overrides) -> ModelConfig:
    """A CPU-sized model: ResNet-18 DeepLabv3+ with 32-d features, hidden width 32."""
    base = dict(encoder="deeplabv3plus_resnet18", feature_dim=32, hidden_dim=32, num_coarse=8,
                num_fine=8, near=0.1, far=6.0, chunk_size=256)
    base.update(overrides)
    return ModelConfig(**base)


@pytest.fixture
def make_config():
    """``make_config(**overrides) -> ModelConfig`` of the tiny CPU model."""
    return tiny_config
