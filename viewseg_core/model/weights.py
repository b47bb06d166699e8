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
- ``viewseg-model``: a whole ViewSeg: ``{format, format_version, config, state_dict}`` and,
  when known, ``data``: the data settings it was trained with (``training.data.DataConfig``
  as a plain dict, ``training.config_io.to_dict``), which ``viewseg eval`` reads. Readers
  ignore keys they do not know, so files with and without ``data`` load alike.
- a torchvision ResNet ImageNet state dict (``conv1.weight``, ``layer1.0...``, ``fc.weight``)
  loads into an encoder's backbone; ``torchvision:imagenet`` (:data:`TORCHVISION_IMAGENET`)
  names torchvision's own file in the local torch hub cache, which is never downloaded
  (:func:`torchvision_weights_file`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
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
DATA_KEY = "data"  # a model file's data settings (training.data.DataConfig as a plain dict)
_MAX_LISTED = 25  # keys listed per category in an error; the count is always given
# Float16 storage (demo checkpoints, the committed 2D segmenter): tensors with fewer elements
# stay float32 (biases, norm statistics: a few KB in all, and statistics stay exact).
SMALL_TENSOR = 4096
FP16_MAX = 65504.0


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


def torchvision_weights_file(encoder_name: str, spec: str = "") -> tuple[Path, str]:
    """(local path, download URL) of torchvision's ImageNet file for ``encoder_name``.

    The path is where torchvision itself caches it: ``torch.hub.get_dir()/checkpoints/<file
    name of the URL>`` (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/...``).
    Raises:
        ValueError for a spec other than ``torchvision:imagenet`` and for an encoder without
        torchvision ImageNet weights here.
    """
    from urllib.parse import urlparse

    import torchvision

    from viewseg_core.model.encoder import IMAGENET_WEIGHTS, TORCHVISION_IMAGENET

    spec = spec or TORCHVISION_IMAGENET
    if spec != TORCHVISION_IMAGENET:
        raise ValueError(f"model.encoder_weights {spec!r}: the only torchvision weights viewseg knows are "
                         f"{TORCHVISION_IMAGENET!r}")
    if encoder_name not in IMAGENET_WEIGHTS:
        raise ValueError(f"model.encoder_weights {spec!r} is only for encoder(s) {', '.join(sorted(IMAGENET_WEIGHTS))} "
                         f"(pixelNeRF's ImageNet ResNet-34), not {encoder_name!r}: give a local weights file "
                         f"(e.g. a `viewseg pretrain-2d` segmenter) or \"\"")
    enum_name, member = IMAGENET_WEIGHTS[encoder_name].split(".")
    url = getattr(torchvision.models, enum_name)[member].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path), url


def _require_torchvision_file(spec: str, path: Path, url: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"model.encoder_weights {spec!r}: {path} is missing and viewseg never downloads; "
                                f"fetch {url} on a machine with network and place it at {path} "
                                f"(torch.hub.get_dir()/checkpoints; TORCH_HOME moves it)")


def require_encoder_weights(encoder_name: str, spec: str) -> None:
    """Raise now what :func:`load_encoder_weights` would raise later for a missing or unknown
    ``model.encoder_weights`` (``""`` = random init: nothing to check), so that a training
    run fails before it builds its dataset. Reads no file."""
    if not spec:
        return
    if spec.startswith("torchvision:"):
        _require_torchvision_file(spec, *torchvision_weights_file(encoder_name, spec))
    elif not Path(spec).is_file():
        raise FileNotFoundError(f"weights file {spec} does not exist (viewseg never downloads weights)")


def load_torchvision_imagenet(encoder: "Encoder", spec: str = "", *, include_head: bool = False) -> Path:
    """Load torchvision's ImageNet weights for ``encoder`` from the local torch hub cache.

    Never downloads: where the file is absent the error names the file, the folder to put it
    in and the URL to fetch it from on a machine with network. The file is read with
    ``weights_only=True`` and loaded strictly into the backbone (``fc`` and unused layers
    dropped by name). A file whose SHA-256 does not begin with the hash torchvision puts in
    its name (``resnet34-<hash>.pth``) loads with a warning: it is not torchvision's release.
    Returns the file's path.
    """
    from viewseg_core.model.encoder import TORCHVISION_IMAGENET

    spec = spec or TORCHVISION_IMAGENET
    path, url = torchvision_weights_file(encoder.name, spec)
    if include_head:
        raise ValueError(f"model.encoder_weights {spec!r}: ImageNet weights have no {encoder.num_classes}-class "
                         f"head; set model.encoder_weights_head false")
    _require_torchvision_file(spec, path, url)
    stem = path.name.rsplit(".", 1)[0]
    expected = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if expected and not digest.startswith(expected):
        warnings.warn(f"{path}: SHA-256 {digest[:12]}... does not start with {expected}, the hash in "
                      f"torchvision's file name: this is not torchvision's release of {url}", stacklevel=2)
    load_backbone_weights(encoder, path)
    return path


def load_encoder_weights(encoder: "Encoder", path: str | Path, *, include_head: bool = True) -> None:
    """Initialise an encoder from a local file: a ``viewseg-encoder`` checkpoint (from
    ``viewseg pretrain-2d``), a plain encoder state dict, or torchvision ResNet weights;
    ``torchvision:imagenet`` (:data:`~viewseg_core.model.encoder.TORCHVISION_IMAGENET`) is
    torchvision's ImageNet file from the local hub cache (:func:`load_torchvision_imagenet`).

    ``include_head=False`` leaves the class head out on both sides, e.g. to start a 37-class
    ViewSeg from an ADE20k (150-class) DeepLabv3+: the field only uses the features.
    """
    if isinstance(path, str) and path.startswith("torchvision:"):
        load_torchvision_imagenet(encoder, path, include_head=include_head)
        return
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


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain containers (tuples become lists); anything else is an error."""
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"{where}: keys must be strings, got {bad!r}")
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(f"{where}: {type(value).__name__} is not a plain value (str, number, bool, list, dict)")


def model_checkpoint(model: "ViewSeg", data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``viewseg-model`` dict: the config as plain values and the state dict, nothing pickled;
    with ``data`` (the training ``DataConfig`` as a plain dict) under :data:`DATA_KEY`."""
    ckpt = {"format": MODEL_FORMAT, "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(model.config), "state_dict": model.state_dict()}
    if data is not None:
        if not isinstance(data, Mapping):
            raise ValueError(f"model data settings must be a dict, got {type(data).__name__}")
        ckpt[DATA_KEY] = _plain(data, DATA_KEY)
    return ckpt


def model_data(obj: Any) -> dict[str, Any] | None:
    """The data settings a loaded model file carries, or None.

    ``obj`` is what :func:`read_weights_file` returned for a ``viewseg-model`` file (its
    ``data``) or a training checkpoint (its model's ``data``, else ``config['data']``).
    """
    if not isinstance(obj, Mapping):
        return None
    if obj.get("format") == MODEL_FORMAT:
        data = obj.get(DATA_KEY)
        return dict(data) if isinstance(data, Mapping) else None
    inner = obj.get("model")
    if isinstance(inner, Mapping) and isinstance(inner.get(DATA_KEY), Mapping):
        return dict(inner[DATA_KEY])
    config = obj.get("config")
    if isinstance(config, Mapping) and isinstance(config.get(DATA_KEY), Mapping):
        return dict(config[DATA_KEY])
    return None


def half_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int, int]:
    """(state with large float tensors as float16, count stored as float16, count kept float32).

    Tensors under :data:`SMALL_TENSOR` elements and any that float16 cannot hold
    (|x| > 65504) stay as they are; loaders cast every tensor back to the module's dtype.
    """
    out, halved, kept = {}, 0, 0
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point() and tensor.numel() >= SMALL_TENSOR and \
                (tensor.numel() == 0 or float(tensor.abs().max()) <= FP16_MAX):
            out[name] = tensor.to(torch.float16)
            halved += 1
        else:
            out[name] = tensor.clone()  # own, compact storage (no shared views in the file)
            kept += tensor.is_floating_point()
    return out, halved, kept


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
    ``depth_evidence=True`` is the exception (``field.EVIDENCE_AT_INIT``): it is added at its
    initial value and changes the renders at once, by design.

    E.g. an RGB checkpoint as the start of an RGB-D model:
    ``extend_model(load_model(path), source_depth=True, depth_guided=True)``.
    Raises:
        ValueError if a change adds or reshapes any other weight (strict loading).
    """
    from viewseg_core.model.field import EVIDENCE_AT_INIT, NOOP_AT_INIT
    from viewseg_core.model.viewseg import ViewSeg

    new = ViewSeg(dataclasses.replace(model.config, **changes))
    load_state_strict(new, model.state_dict(), "extend_model", allow_new=NOOP_AT_INIT + EVIDENCE_AT_INIT)
    param = next(model.parameters())
    return new.to(param.device).train(model.training)


def save_model(model: "ViewSeg", path: str | Path, data: Mapping[str, Any] | None = None) -> Path:
    """Write a ``viewseg-model`` checkpoint atomically (with its data settings when given)."""
    return torch_save_atomic(model_checkpoint(model, data), path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> "ViewSeg":
    """Read a ``viewseg-model`` file (or a training checkpoint holding one under ``model``)."""
    obj = read_weights_file(path)
    if isinstance(obj, Mapping) and obj.get("format") != MODEL_FORMAT and \
            isinstance(obj.get("model"), Mapping) and obj["model"].get("format") == MODEL_FORMAT:
        obj = obj["model"]
    return model_from_checkpoint(obj, str(path)).to(map_location)
