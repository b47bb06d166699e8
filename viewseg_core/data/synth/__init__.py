"""Procedural indoor scenes, exactly ray-cast: the embedded default data (no downloads).

- :mod:`.scene`: primitive arrays (boxes, vertical cylinders), materials, lights.
- :mod:`.room`, :mod:`.furniture`, :mod:`.layout`: rooms of varied shape, furnished by type.
- :mod:`.raycast`, :mod:`.shading`, :mod:`.render`: exact ray casting -> RGB, labels, depth.
- :mod:`.trajectory`: robot- and human-height camera walks.
- :mod:`.generate`: datasets of scene folders with splits.
"""
from viewseg_core.data.synth.generate import (SynthConfig, load_scene, make_scene, read_splits, scene_name,
                                              scene_seed, write_dataset, write_scene)
from viewseg_core.data.synth.layout import ROOM_TYPES, generate_scene
from viewseg_core.data.synth.render import Rendering, render, render_view
from viewseg_core.data.synth.scene import Scene

__all__ = ["SynthConfig", "load_scene", "make_scene", "read_splits", "scene_name", "scene_seed", "write_dataset", "write_scene",
           "ROOM_TYPES", "generate_scene", "Rendering", "render", "render_view", "Scene"]
