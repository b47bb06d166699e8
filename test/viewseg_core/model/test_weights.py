"""Local weights: strict loading with listed bad keys, refusal of pickled code, round trips."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision

from viewseg_core.model import (ViewSeg, build_encoder, build_model, load_backbone_weights, load_encoder_weights,
                                load_model, save_encoder, save_model)
from viewseg_core.model.weights import MODEL_FORMAT, model_checkpoint, read_weights_file


class Payload:
    """A real class instance whose unpickling runs code: it would create ``marker``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _encoder(**kw):
    torch.manual_seed(0)
    return build_encoder("deeplabv3plus_resnet18", feature_dim=kw.pop("feature_dim", 16), **kw)


def test_pickled_code_is_refused(tmp_path, make_config):
    marker = tmp_path / "pwned"
    enc = _encoder()
    evil = tmp_path / "evil.pt"
    torch.save({"format": "viewseg-encoder", "state_dict": enc.state_dict(), "note": Payload(marker)}, evil)
    for load in (read_weights_file, lambda p: load_encoder_weights(enc, p), load_model):
        with pytest.raises(ValueError, match="refusing weights file .*evil.pt"):
            load(evil)
    assert not marker.exists()
    # A harmless but pickled object (a config dataclass instead of its dict) is refused too.
    model = ViewSeg(make_config())
    bad = tmp_path / "model_with_object.pt"
    torch.save({"format": MODEL_FORMAT, "format_version": 1, "config": model.config,
                "state_dict": model.state_dict()}, bad)
    with pytest.raises(ValueError, match="refusing"):
        load_model(bad)


def test_model_round_trip(tmp_path, make_config, box_room):
    torch.manual_seed(0)
    # encoder_weights names a file that does not exist here: a whole-model checkpoint never reads it.
    model = ViewSeg(make_config(hidden_dim=24, norm="frozen_bn", encoder_weights="/elsewhere/enc.pt")).eval()
    path = save_model(model, tmp_path / "m" / "viewseg.pt")
    assert not list(path.parent.glob("*.tmp"))
    loaded = load_model(path).eval()
    assert loaded.config == model.config
    with torch.no_grad():
        H, W = box_room.height, box_room.width
        outs = []
        for m in (model, loaded):
            src = m.make_sources(m.encode_sources(box_room.source_rgb()), box_room.K.expand(1, 4, 3, 3),
                                 box_room.source_c2w[None], H, W)
            outs.append(m.render(box_room.K, box_room.target_c2w[0], H, W, src))
    assert torch.equal(outs[0].logits, outs[1].logits)
    # A training checkpoint that nests the model dict loads too.
    nested = tmp_path / "train.pt"
    torch.save({"format": "viewseg-train-checkpoint", "model": model_checkpoint(model)}, nested)
    assert load_model(nested).config == model.config
    # Unknown config keys name the file.
    ckpt = model_checkpoint(model)
    ckpt["config"]["n_layers"] = 9
    torch.save(ckpt, tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match=r"unknown.pt: unknown model config key\(s\) \['n_layers'\]"):
        load_model(tmp_path / "unknown.pt")


def test_bad_keys_are_listed_together(tmp_path):
    enc = _encoder()
    state = enc.state_dict()
    del state["decoder.0.0.weight"]                       # missing
    state["extra.weight"] = torch.zeros(3)                # unexpected
    state["head.weight"] = torch.zeros(5, 16, 1, 1)       # shape-mismatched
    torch.save({"state_dict": state}, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as err:
        load_encoder_weights(_encoder(), tmp_path / "bad.pt")
    msg = str(err.value)
    assert "bad.pt" in msg and "missing 1: decoder.0.0.weight" in msg and "unexpected 1: extra.weight" in msg
    assert "shape-mismatched" in msg and "head.weight (file (5, 16, 1, 1) vs model (37, 16, 1, 1))" in msg
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_encoder_weights(enc, tmp_path / "absent.pt")


def test_encoder_checkpoint_with_other_classes(tmp_path):
    src = _encoder(num_classes=150)
    path = save_encoder(src, tmp_path / "ade.pt", [f"c{i}" for i in range(150)])
    dst = build_encoder("deeplabv3plus_resnet18", feature_dim=16)
    with pytest.raises(ValueError, match="head.weight"):
        load_encoder_weights(dst, path)  # 150-class head into a 37-class model: refused...
    load_encoder_weights(dst, path, include_head=False)  # ...unless the head is left out explicitly
    for k, v in src.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(dst.state_dict()[k], v), k
    with pytest.raises(ValueError, match="holds a 'deeplabv3plus_resnet18' encoder"):
        load_encoder_weights(build_encoder("pixelnerf_resnet34"), path, include_head=False)


def test_bn_and_frozen_bn_checkpoints_interchange(tmp_path):
    bn, frozen = _encoder(), _encoder(norm="frozen_bn")
    save_encoder(frozen, tmp_path / "frozen.pt")
    load_encoder_weights(bn, tmp_path / "frozen.pt")
    save_encoder(bn, tmp_path / "bn.pt")
    load_encoder_weights(_encoder(norm="frozen_bn"), tmp_path / "bn.pt")


def test_torchvision_backbone_weights(tmp_path, make_config):
    torch.manual_seed(5)
    resnet = torchvision.models.resnet18(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    enc = _encoder()
    load_backbone_weights(enc, tmp_path / "resnet18.pth")
    assert torch.equal(enc.backbone.layer3[1].conv2.weight, resnet.layer3[1].conv2.weight)
    assert torch.equal(enc.backbone.bn1.running_var, resnet.bn1.running_var)
    # The same file through ModelConfig.encoder_weights (auto-detected as a backbone).
    model = build_model(dataclasses.replace(make_config(), encoder_weights=str(tmp_path / "resnet18.pth")))
    assert torch.equal(model.encoder.backbone.conv1.weight, resnet.conv1.weight)
    # A ResNet-34 file has the same key names but more blocks: refused with the keys listed.
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(ValueError, match=r"unexpected \d+: layer1.2"):
        load_backbone_weights(enc, tmp_path / "resnet34.pth")
    with pytest.raises(ValueError, match="not a torchvision ResNet"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "x.pt")
        load_backbone_weights(enc, tmp_path / "x.pt")


def test_fine_tuning_may_add_layers_that_start_as_a_no_op(make_config, box_room):
    """A paper-model checkpoint loads into a mean_var + source_rgb model (the init_from path of
    training) and renders the same images; any other missing key is still refused."""
    from viewseg_core.model.field import NOOP_AT_INIT
    from viewseg_core.model.weights import load_state_strict
    torch.manual_seed(0)
    old = ViewSeg(make_config(hidden_dim=24)).eval()
    new = ViewSeg(make_config(hidden_dim=24, view_pooling="mean_var", source_rgb=True)).eval()
    with pytest.raises(ValueError, match="missing 6: .*colour_proj.*pool_proj"):
        load_state_strict(new, old.state_dict(), "old.pt")
    load_state_strict(new, old.state_dict(), "old.pt", allow_new=NOOP_AT_INIT)
    state = old.state_dict()
    del state["renderer.coarse.lin_in.bias"]
    with pytest.raises(ValueError, match="missing 1: renderer.coarse.lin_in.bias"):
        load_state_strict(new, state, "old.pt", allow_new=NOOP_AT_INIT)
    H, W = box_room.height, box_room.width
    rgb = box_room.source_rgb()
    with torch.no_grad():
        outs = [m.render(box_room.K, box_room.target_c2w[0], H, W,
                         m.make_sources(m.encode_sources(rgb), box_room.K.expand(1, 4, 3, 3),
                                        box_room.source_c2w[None], H, W, rgb=rgb)) for m in (old, new)]
    torch.testing.assert_close(outs[1].logits, outs[0].logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs[1].depth, outs[0].depth, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_model_files_carry_data_settings_and_old_readers_ignore_them(tmp_path, make_config):
    from viewseg_core.model.weights import DATA_KEY, model_data, model_from_checkpoint

    torch.manual_seed(0)
    model = ViewSeg(make_config()).eval()
    data = {"root": "data/x", "image_size": (60, 80), "pairs": {"min_baseline": 0.3}, "pose_noise": [0.0, 1.5]}
    path = save_model(model, tmp_path / "with_data.pt", data=data)
    raw = read_weights_file(path)
    assert DATA_KEY == "data" and raw["data"] == {"root": "data/x", "image_size": [60, 80],
                                                  "pairs": {"min_baseline": 0.3}, "pose_noise": [0.0, 1.5]}
    assert model_data(raw) == raw["data"]
    # Every reader of model files loads it as before (they ignore keys they do not know).
    for loaded in (load_model(path), model_from_checkpoint(raw, str(path))):
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    # A file without the key: no data settings; a training checkpoint: its config's data section.
    plain = read_weights_file(save_model(model, tmp_path / "plain.pt"))
    assert "data" not in plain and model_data(plain) is None
    assert model_data({"model": plain, "config": {"data": {"root": "r"}}}) == {"root": "r"}
    assert model_data({"model": model_checkpoint(model, {"root": "inner"}), "config": {"data": {"root": "r"}}}) == \
        {"root": "inner"}
    # Only plain values: the file must load with weights_only=True.
    with pytest.raises(ValueError, match=r"data.root: PosixPath is not a plain value"):
        model_checkpoint(model, {"root": tmp_path})
    with pytest.raises(ValueError, match="must be a dict"):
        model_checkpoint(model, ["root"])
