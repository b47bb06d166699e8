"""docs/ros.md cannot drift from the nodes: every parameter, topic and service a real node
declares is documented there, and the generated parameter tables are up to date."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

from rclpy.parameter import Parameter  # noqa: E402  (a missing rclpy must fail, not skip)

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "ros.md"
# rclpy's own per-node services and topics: not part of the node's interface.
BUILTIN_SERVICES = ("describe_parameters", "get_parameters", "get_parameter_types", "list_parameters",
                    "set_parameters", "set_parameters_atomically", "get_type_description")
BUILTIN_TOPICS = ("/parameter_events", "/rosout")


def gen_ros_doc():
    spec = importlib.util.spec_from_file_location("gen_ros_doc", REPO / "scripts" / "gen_ros_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section(text: str, title_start: str) -> str:
    """The ``## `` section of ``text`` whose title starts with ``title_start``."""
    start = text.index(f"\n## {title_start}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def documented_parameters(text: str) -> dict[str, tuple[str, str]]:
    """name -> (type, default) from the parameter table rows of ``text``."""
    return {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r"^\| `([\w.]+)` \| (\w+) \| `([^`]*)` \|", text, re.M)}


def as_documented(name: str, node_name: str) -> str:
    """A resolved topic/service name as docs/ros.md writes it (``~/x``, ``/tf``, relative ``image``)."""
    private = f"/{node_name}/"
    if ("/" + name.lstrip("/")).startswith(private):
        return "~/" + ("/" + name.lstrip("/"))[len(private):]
    if name.startswith("~/"):
        return name
    return name if name in ("/tf", "/tf_static", "/diagnostics") else name.lstrip("/")


def interface_names(node) -> set[str]:
    names = {as_documented(p.topic_name, node.get_name()) for p in node.publishers
             if p.topic_name not in BUILTIN_TOPICS}
    names |= {as_documented(s.topic_name, node.get_name()) for s in node.subscriptions}
    names |= {as_documented(s.srv_name, node.get_name()) for s in node.services
              if not s.srv_name.endswith(BUILTIN_SERVICES)}
    return names


def test_generated_parameter_tables_are_up_to_date(capsys):
    assert gen_ros_doc().main(["--check"]) == 0, capsys.readouterr().out


def test_every_declared_viewseg_parameter_topic_and_service_is_documented(rclpy_context, tmp_path):
    import torch

    from viewseg_core.model.viewseg import ModelConfig, ViewSeg
    from viewseg_core.model.weights import save_model
    from viewseg_ros.node import PARAMETERS, ViewSegNode

    torch.manual_seed(0)
    checkpoint = save_model(ViewSeg(ModelConfig(encoder="deeplabv3plus_resnet18", feature_dim=8, hidden_dim=16,
                                                n_blocks=1, n_head_blocks=1, n_harmonic_xyz=2, n_harmonic_dir=1,
                                                num_coarse=4, num_fine=0)), tmp_path / "tiny.pt")
    node = ViewSegNode(context=rclpy_context, parameter_overrides=[
        Parameter("checkpoint", value=str(checkpoint)), Parameter("warmup", value=False)])
    try:
        declared = gen_ros_doc().declared_parameters(node)
        interface = interface_names(node)
    finally:
        node.destroy_node()
    assert set(declared) == set(PARAMETERS)  # the generator's source is what the node declares
    doc = section(DOC.read_text(), "viewseg_ros/viewseg_node")
    table = documented_parameters(doc)
    assert set(table) == set(declared)
    assert table["keyframes.width"] == ("int", "0") and table["tf_wait_s"] == ("double", "1.0")
    assert table["warmup"] == ("bool", "true") and table["fixed_frame"] == ("string", "map")
    assert interface == {"image", "camera_info", "/tf", "/tf_static", "~/query", "~/semantic",
                         "~/semantic_color", "~/depth", "~/confidence", "~/camera_info", "~/points", "/diagnostics",
                         "~/keyframe_poses", "~/render_view", "~/save_keyframes", "~/load_keyframes",
                         "~/clear_keyframes", "~/change_state", "~/get_state", "~/get_available_states",
                         "~/get_available_transitions", "~/get_transition_graph"}
    for name in interface:
        assert f"`{name}`" in doc, name


def test_every_declared_sim_camera_parameter_and_topic_is_documented(rclpy_context):
    from viewseg_ros.sim_camera import SimCameraNode

    node = SimCameraNode(context=rclpy_context, parameter_overrides=[Parameter("width", value=16),
                                                                    Parameter("height", value=12)])
    try:
        node.timer.cancel()
        declared = gen_ros_doc().declared_parameters(node)
        interface = interface_names(node)
    finally:
        node.destroy_node()
    doc = section(DOC.read_text(), "viewseg_ros/viewseg_sim_camera")
    assert set(documented_parameters(doc)) == set(declared)
    assert interface == {"image", "camera_info", "depth", "/tf", "/tf_static"}
    for name in interface:
        assert f"`{name}`" in doc, name


def test_every_render_view_field_is_documented():
    srv = (REPO / "interfaces" / "viewseg_interfaces" / "srv" / "RenderView.srv").read_text()
    request, response = srv.split("---")
    fields = lambda part: [ln.split()[1] for ln in part.splitlines() if ln.strip() and not ln.startswith("#")]  # noqa: E731
    doc = DOC.read_text()
    for name in fields(request):
        assert f"| request `{name}` |" in doc, name
    for name in fields(response):
        assert f"| response `{name}` |" in doc, name


def test_every_keyframe_store_field_is_documented():
    """The save/load services' table names every request and response field."""
    doc = DOC.read_text()
    for service, srv in (("~/save_keyframes", "SaveKeyframes"), ("~/load_keyframes", "LoadKeyframes")):
        text = (REPO / "interfaces" / "viewseg_interfaces" / "srv" / f"{srv}.srv").read_text()
        request, response = text.split("---")
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{service}` |"))
        for part in (request, response):
            for name in [ln.split()[1] for ln in part.splitlines() if ln.strip() and not ln.startswith("#")]:
                assert f"`{name}`" in row, (service, name)
