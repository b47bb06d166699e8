"""Weights from local files only: encoder/backbone initialisation and whole-model checkpoints.

Nothing here downloads. Every file is read with ``torch.load(weights_only=True)``, so a
file that holds a pickled Python object (which could run code when unpickled) is refused
with a clear error. Loading is strict: missing, unexpected and shape-mismatched keys are
collected and reported together in one ValueError. The only keys skipped are named by the
caller or by the encoder itself (``backbone_unused_prefixes``: the ResNet's ``fc`` and, for
truncated backbones, ``layer4``; ``head.`` when ``include_head=False``), plus BatchNorm's
``num_batches_tracked`` counters, which frozen BatchNorm does not have and which carry no
weights.

File formats (all plain dicts of tensors, numbers and strings):

- ``viewseg-encoder``: a 2D encoder with its class head, written by ``viewseg pretrain-2d``:
  ``{format, format_version, encoder, feature_dim, num_classes, class_names, state_dict}``.
- ``viewseg-model``: a whole ViewSeg: ``{format, format_version, config, state_dict}``.
- a torchvision ResNet ImageNet state dict (``conv1.weight``, ``layer1.0...``, ``fc.weight``)
  loads into an encoder's backbone.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import torch
from torch import nn

from viewseg_core.atomic_io import torch_save_atomic

if TYPE_CHECKING:
    from viewseg_core.model.encoder import Encoder
    from viewseg_core.model.viewseg import ViewSeg

ENCODER_FORMAT = "viewseg-encoder"
MODEL_FORMAT = "viewseg-model"
FORMAT_VERSION = 1
_MAX_LISTED = 25  # keys listed per category in an error; the count is always given


def read_weights_file(path: str | Path) -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)`` with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist (viewseg never downloads weights)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for code objects; RuntimeError/EOFError for torn files
        raise ValueError(f"refusing weights file {path}: it is corrupt or holds pickled Python objects "
                         f"beyond tensors and plain containers (torch.load(weights_only=True) said: "
                         f"{_reason(exc)})") from exc


def _reason(exc: Exception) -> str:
    """The informative line of torch.load's error (the unsupported global, if named)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "Unsupported global" in ln or "WeightsUnpickler error" in ln:
            return ln
    return lines[0] if lines else type(exc).__name__


def extract_state_dict(obj: Any, path: str | Path = "<memory>") -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded file: itself, or under ``state_dict``/``model``.

    A ``module.`` prefix on every key (a DDP-wrapped model) is removed.
    """
    state = obj
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{path}: no state dict found (expected a dict of tensors, or one under "
                         f"'state_dict' or 'model')")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: state dict entries that are not tensors: {_listing(map(str, bad))}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return f"{shown}{f', ... ({len(keys) - _MAX_LISTED} more)' if len(keys) > _MAX_LISTED else ''}"


def _skipped(key: str, prefixes: tuple[str, ...]) -> bool:
    return key.startswith(prefixes) or key.endswith("num_batches_tracked")


def load_state_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, *,
                      skip_prefixes: tuple[str, ...] = (), allow_new: tuple[str, ...] = ()) -> None:
    """Copy ``state`` into ``module``, refusing any missing, unexpected or mismatched key.

    Keys under ``skip_prefixes`` (on either side) and ``num_batches_tracked`` counters are
    left out of the comparison; skipped model entries keep their current values, except
    counters that the file does have, which are copied. Model keys
    inside a submodule named in ``allow_new`` (e.g. ``field.NOOP_AT_INIT``) may be absent
    from ``state`` and keep their initial values too.
    Raises:
        ValueError listing every bad key, grouped by kind, with ``source`` (the file).
    """
    own = module.state_dict()
    want = {k: v for k, v in own.items() if not _skipped(k, skip_prefixes)}
    have = {k: v for k, v in state.items() if not _skipped(k, skip_prefixes)}
    missing = sorted(k for k in set(want) - set(have) if not set(k.split(".")[:-1]) & set(allow_new))
    unexpected = sorted(set(have) - set(want))
    mismatched = sorted(f"{k} (file {tuple(have[k].shape)} vs model {tuple(want[k].shape)})"
                        for k in set(want) & set(have) if have[k].shape != want[k].shape)
    if missing or unexpected or mismatched:
        parts = [f"{name} {len(keys)}: {_listing(keys)}" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)) if keys]
        raise ValueError(f"weights from {source} do not fit {type(module).__name__}; " + "; ".join(parts))
    merged = dict(own)
    merged.update({k: v.to(own[k].dtype) for k, v in have.items()})
    # Counters are optional (torchvision files lack them) but kept when the file has them, so
    # that a model read and written again is the same file.
    merged.update({k: v.to(own[k].dtype) for k, v in state.items() if k.endswith("num_batches_tracked")
                   and k in own and not k.startswith(skip_prefixes) and v.shape == own[k].shape})
    module.load_state_dict(merged, strict=True)


def _looks_like_torchvision_resnet(state: Mapping[str, torch.Tensor]) -> bool:
    return "conv1.weight" in state and "layer1.0.conv1.weight" in state


def load_backbone_weights(encoder: "Encoder", path: str | Path) -> None:
    """Load a torchvision ResNet ImageNet state dict (a local ``resnet50-*.pth``) into the backbone.

    The file's ``fc.*`` (ImageNet classifier) and, for truncated backbones, ``layer4.*`` are
    dropped by name; every other key must match the backbone exactly.
    """
    state = extract_state_dict(read_weights_file(path), path)
    if not _looks_like_torchvision_resnet(state):
        raise ValueError(f"{path} is not a torchvision ResNet state dict (no conv1.weight / "
                         f"layer1.0.conv1.weight keys)")
    load_state_strict(encoder.backbone, state, str(path), skip_prefixes=encoder.backbone_unused_prefixes)


def load_encoder_weights(encoder: "Encoder", path: str | Path, *, include_head: bool = True) -> None:
    """Initialise an encoder from a local file: a ``viewseg-encoder`` checkpoint (from
    ``viewseg pretrain-2d``), a plain encoder state dict, or torchvision ResNet weights.

    ``include_head=False`` leaves the class head out on both sides, e.g. to start a 37-class
    ViewSeg from an ADE20k (150-class) DeepLabv3+: the field only uses the features.
    """
    obj = read_weights_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == ENCODER_FORMAT:
        if obj.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {obj['format_version']} is newer than this viewseg "
                             f"understands ({FORMAT_VERSION})")
        if obj.get("encoder") != encoder.name:
            raise ValueError(f"{path} holds a {obj.get('encoder')!r} encoder, the model uses {encoder.name!r}")
    state = extract_state_dict(obj, path)
    if _looks_like_torchvision_resnet(state):
        load_state_strict(encoder.backbone, state, str(path), skip_prefixes=encoder.backbone_unused_prefixes)
        return
    load_state_strict(encoder, state, str(path), skip_prefixes=() if include_head else ("head.",))


def save_encoder(encoder: "Encoder", path: str | Path, class_names: Iterable[str] = (),
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write a ``viewseg-encoder`` checkpoint (plain types only; ``extra`` must be plain too)."""
    ckpt = {"format": ENCODER_FORMAT, "format_version": FORMAT_VERSION, "encoder": encoder.name,
            "feature_dim": encoder.feature_dim, "num_classes": encoder.num_classes,
            "class_names": list(class_names), "state_dict": encoder.state_dict()}
    ckpt.update(dict(extra or {}))
    return torch_save_atomic(ckpt, path)


def model_checkpoint(model: "ViewSeg") -> dict[str, Any]:
    """A ``viewseg-model`` dict: the config as plain values and the state dict, nothing pickled."""
    return {"format": MODEL_FORMAT, "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(model.config), "state_dict": model.state_dict()}


def model_from_checkpoint(ckpt: Mapping[str, Any], source: str = "<memory>") -> "ViewSeg":
    """Rebuild a ViewSeg from :func:`model_checkpoint`'s dict (strict loading)."""
    from viewseg_core.model.viewseg import ModelConfig, ViewSeg

    if not isinstance(ckpt, Mapping) or ckpt.get("format") != MODEL_FORMAT:
        raise ValueError(f"{source} is not a viewseg model checkpoint (no format={MODEL_FORMAT!r})")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{source}: format_version {ckpt['format_version']} is newer than this viewseg "
                         f"understands ({FORMAT_VERSION})")
    config = ModelConfig.from_dict(ckpt.get("config", {}), source)
    # ViewSeg() never reads ``config.encoder_weights`` (build_model does): the file's weights
    # are the whole model, and the path may not exist where the checkpoint is loaded.
    model = ViewSeg(config)
    load_state_strict(model, extract_state_dict(ckpt, source), source)
    return model


def extend_model(model: "ViewSeg", **changes: Any) -> "ViewSeg":
    """A new ViewSeg with ``changes`` to ``model``'s config and its weights, where the layers
    the changes add begin as no-ops (``field.NOOP_AT_INIT``: e.g. ``source_depth=True``,
    ``source_rgb=True``, ``view_pooling="mean_var"``), so the new model starts as the same
    function; ``depth_guided`` and sample counts change only where the field is probed.

    E.g. an RGB checkpoint as the start of an RGB-D model:
    ``extend_model(load_model(path), source_depth=True, depth_guided=True)``.
    Raises:
        ValueError if a change adds or reshapes any other weight (strict loading).
    """
    from viewseg_core.model.field import NOOP_AT_INIT
    from viewseg_core.model.viewseg import ViewSeg

    new = ViewSeg(dataclasses.replace(model.config, **changes))
    load_state_strict(new, model.state_dict(), "extend_model", allow_new=NOOP_AT_INIT)
    param = next(model.parameters())
    return new.to(param.device).train(model.training)


def save_model(model: "ViewSeg", path: str | Path) -> Path:
    """Write a ``viewseg-model`` checkpoint atomically."""
    return torch_save_atomic(model_checkpoint(model), path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> "ViewSeg":
    """Read a ``viewseg-model`` file (or a training checkpoint holding one under ``model``)."""
    obj = read_weights_file(path)
    if isinstance(obj, Mapping) and obj.get("format") != MODEL_FORMAT and \
            isinstance(obj.get("model"), Mapping) and obj["model"].get("format") == MODEL_FORMAT:
        obj = obj["model"]
    return model_from_checkpoint(obj, str(path)).to(map_location)
