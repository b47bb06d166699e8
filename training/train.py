"""``viewseg train``: one training loop for a CPU, a GPU, or many GPUs under torchrun.

    viewseg train --config training/configs/synthetic_small.yaml run.out_dir=runs/x optim.lr=1e-3
    torchrun --nproc_per_node 8 -m training.train --config training/configs/hypersim.yaml

Checkpoints (``<out_dir>/checkpoints/step_N.pt``) are written atomically and hold the model,
optimizer, scheduler, step, config and RNG states; rerunning the same command resumes from
the newest one and reaches the same weights as a run that never stopped (data order and
ray sampling depend only on the seed, the epoch and the example index).

Resuming:

* temp files that a kill during a checkpoint write left (``.step_N.pt.*.tmp``) are deleted
  at start, with a line saying so;
* an unreadable newest checkpoint is skipped with a warning and the previous one is used;
  if none can be read the command stops rather than starting over;
* learning-rate settings given now (``optim.lr``, ``optim.lr_final_ratio``,
  ``optim.warmup_steps``, ``run.max_steps``) are APPLIED from the resumed step, with a line
  naming each change: the schedule continues at the new values, as ``config.yaml`` records.
  ``optim.grad_clip`` and ``optim.batch_size`` are read every step and apply as well.
  The model config cannot change on resume (an error; use a new ``run.out_dir``).
* class weights (``loss.class_balance``) are the checkpoint's, not counted again from the data.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from training import distributed
from training.checkpoint import (FORMAT, FORMAT_VERSION, list_checkpoints, load_latest_readable, rng_state, save_atomic,
                                 set_rng_state)
from training.config_io import check_bounds, load_config, to_dict
from training.data import (CLASS_BALANCE_VIEWS, DataConfig, build_dataset, collate, label_counts, repeat_targets,
                           to_model_batch)
from viewseg_core.atomic_io import ensure_dir, remove_stale_temps, write_text_atomic
from viewseg_core.classes import CLASS_NAMES
from viewseg_core.model.losses import LossConfig, class_weights_from_counts, viewseg_losses
from viewseg_core.model.field import EVIDENCE_AT_INIT, NOOP_AT_INIT
from viewseg_core.model.viewseg import ModelConfig, ViewSeg, build_model
from viewseg_core.model.weights import (load_model, load_state_strict, model_checkpoint, require_encoder_weights,
                                        save_model)


@dataclass
class OptimConfig:
    lr: float = 5e-4
    lr_final_ratio: float = 0.1       # exponential decay to lr * ratio at max_steps
    warmup_steps: int = 0
    batch_size: int = 1               # examples per GPU/process (each: sources + rays)
    grad_clip: float = 0.0            # 0 = off

    def __post_init__(self) -> None:
        check_bounds(self, "optim", at_least={"warmup_steps": 0, "batch_size": 1, "grad_clip": 0.0},
                     above={"lr": 0.0, "lr_final_ratio": 0.0})


@dataclass
class RunConfig:
    out_dir: str = "runs/default"
    max_steps: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    image_every: int = 0              # 0 = no image panels
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda
    bf16: bool = True                 # bf16 autocast on CUDA (ignored on CPU)
    threads: int = 0                  # torch CPU threads, 0 = torch's default
    init_from: str = ""               # start from another run's model (fine-tuning); not a resume

    def __post_init__(self) -> None:
        check_bounds(self, "run", at_least={"max_steps": 1, "checkpoint_every": 1, "keep_checkpoints": 0,
                                            "log_every": 1, "image_every": 0, "seed": 0, "threads": 0})


@dataclass
class TrainConfig:
    model: dict = field(default_factory=dict)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        # LossConfig lives with the losses; its weights are checked here, where configs are read.
        check_bounds(self.loss, "loss", at_least={f.name: 0.0 for f in fields(self.loss) if f.name != "class_weights"},
                     above={"class_weight_max": 0.0})
        weights = self.loss.class_weights
        if weights is not None:
            if not isinstance(weights, (list, tuple)) or not all(
                    isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                    for w in weights):
                raise ValueError(f"config key loss.class_weights must be a list of finite numbers >= 0, got {weights!r}")
            self.loss.class_weights = [float(w) for w in weights]

    def model_config(self) -> ModelConfig:
        model = {"source_size": list(self.data.image_size), **self.model}
        return ModelConfig.from_dict(model, source="config 'model'")


def label_shares(counts) -> str:
    """One line on how the training labels spread over the classes (what class balancing is for)."""
    share = counts / max(int(counts.sum()), 1)
    top = sorted(range(len(counts)), key=lambda c: -share[c])[:2]
    name = lambda c: CLASS_NAMES[c] if len(counts) == len(CLASS_NAMES) else f"class {c}"  # noqa: E731
    rare = int(((share > 0) & (share < 0.005)).sum())
    return (f"{int(counts.sum())} labelled pixels, {', '.join(f'{name(c)} {100 * share[c]:.1f}%' for c in top)}; "
            f"{rare} of {len(counts)} classes under 0.5% each")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int):
    """Linear warm-up, then exponential decay from lr to lr * lr_final_ratio (NeRF-style)."""
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return cfg.lr_final_ratio ** (min(step, max_steps) / max(1, max_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _unwrap(model: torch.nn.Module) -> ViewSeg:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _prune_checkpoints(directory: Path, keep: int) -> None:
    files = list_checkpoints(directory)
    for old in files[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# What a resumed run takes from the command line rather than the checkpoint: the schedule is
# rebuilt from these, so they are applied (and logged) instead of silently kept from before.
_SCHEDULE_KEYS = (("optim", "lr"), ("optim", "lr_final_ratio"), ("optim", "warmup_steps"), ("run", "max_steps"))


def _apply_schedule_changes(saved_config: dict, cfg: TrainConfig, optimizer: torch.optim.Optimizer,
                            scheduler, step: int, log) -> list[str]:
    """Make a resumed optimizer follow ``cfg``'s learning-rate schedule; returns what changed.

    ``scheduler.load_state_dict`` restores the old base learning rate, so without this a
    resumed ``optim.lr=...`` would be recorded in config.yaml and ignored by the optimizer.
    Unchanged settings leave the restored state untouched (bit-identical resume).
    """
    changed = []
    for section, key in _SCHEDULE_KEYS:
        old, new = saved_config.get(section, {}).get(key), getattr(getattr(cfg, section), key)
        if old is not None and old != new:
            changed.append(f"{section}.{key} {old} -> {new}")
    if not changed:
        return changed
    scheduler.base_lrs = [cfg.optim.lr] * len(optimizer.param_groups)
    for group, lr_lambda in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = cfg.optim.lr
        group["lr"] = cfg.optim.lr * lr_lambda(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    log(f"[train] resumed at step {step} with {', '.join(changed)} (changed since the checkpoint): "
        f"applied, learning rate now {optimizer.param_groups[0]['lr']:.6g}")
    return changed


def _resume_class_weights(saved: dict, cfg: "TrainConfig", log) -> None:
    """A resumed class-balanced run keeps the weights its checkpoint trained with.

    They were counted from the run's data at its start; counting again on resume would give
    other weights wherever the data folder changed since, and the resumed steps would then
    train a different loss from the one config.yaml records. Weights given explicitly on the
    command line (``loss.class_weights=[...]``) still win, with a line saying so.
    """
    recorded = saved.get("loss", {}).get("class_weights")
    if cfg.loss.class_balance <= 0 or recorded is None:
        return
    if cfg.loss.class_weights is None:
        cfg.loss.class_weights = [float(w) for w in recorded]
        log(f"[train] class weights from the checkpoint ({len(recorded)} classes, "
            f"{min(recorded):.2f} to {max(recorded):.2f}), not recounted")
    elif [float(w) for w in recorded] != cfg.loss.class_weights:
        log("[train] loss.class_weights given on the command line replace the checkpoint's")


def train(cfg: TrainConfig) -> Path:
    """Train (or resume) and return the path of the final model file."""
    info = distributed.setup(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    out_dir = Path(cfg.run.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    log = _warn if info.is_main else (lambda message: None)
    if info.is_main:
        ensure_dir(ckpt_dir)  # a file in the way fails now, not after the data is loaded
        # A run killed inside an atomic write leaves its temp file; nothing else writes here.
        stale = remove_stale_temps(ckpt_dir, "step_*.pt") + remove_stale_temps(out_dir / "panels", "step_*.png")
        for name in ("model.pt", "config.yaml", "replica_checksums.json"):
            stale += remove_stale_temps(out_dir, name)
        if stale:
            log(f"[train] removed {len(stale)} temp file(s) left by an interrupted run: "
                f"{', '.join(str(p) for p in stale)}")
    torch.manual_seed(cfg.run.seed + info.rank)

    model_cfg = cfg.model_config()
    require_encoder_weights(model_cfg.encoder, model_cfg.encoder_weights)  # seconds before the data, not after
    # The pairs file sits in the run folder (a resume reads it back), never in the data root.
    dataset = build_dataset(cfg.data, split=cfg.data.train_split, seed=cfg.run.seed, pairs_dir=out_dir)
    if cfg.data.repeat_targets:
        mined = len(dataset)
        dataset = repeat_targets(dataset, cfg.data.repeat_targets)
        log(f"[train] data.repeat_targets {dict(cfg.data.repeat_targets)}: {mined} pairs -> {len(dataset)} an epoch")
    sampler = distributed.ResumableDistributedSampler(len(dataset), info.world_size, info.rank, cfg.run.seed,
                                                      cfg.optim.batch_size)
    model = build_model(model_cfg).to(info.device)
    # The 2D class head is for pretraining and the oracle; the field never uses it, and DDP
    # rejects parameters that get no gradient.
    model.encoder.head.requires_grad_(False)
    if info.distributed and model_cfg.norm == "sync_bn":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr)
    scheduler = make_scheduler(optimizer, cfg.optim, cfg.run.max_steps)

    step = 0
    resume_from, ckpt = load_latest_readable(ckpt_dir, map_location=info.device, warn=log)
    if resume_from is not None:
        if ckpt["model"]["config"] != asdict(model_cfg):
            raise ValueError(f"{resume_from} was trained with a different model config; use a new run.out_dir")
        model.load_state_dict(ckpt["model"]["state_dict"], strict=True)  # own file: every buffer, exactly
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
        set_rng_state(ckpt["rng"][min(info.rank, len(ckpt["rng"]) - 1)])
        _apply_schedule_changes(ckpt.get("config", {}), cfg, optimizer, scheduler, step, log)
        _resume_class_weights(ckpt.get("config", {}), cfg, log)
    elif cfg.run.init_from:
        # Fine-tuning: weights from another run (e.g. Hypersim -> Replica), fresh optimizer.
        # Layers that start as a no-op may be new (say, turning on model.source_rgb).
        start = load_model(cfg.run.init_from).state_dict()
        load_state_strict(model, start, cfg.run.init_from, allow_new=NOOP_AT_INIT + EVIDENCE_AT_INIT)
        gained = sorted({k.rsplit(".", 1)[0] for k in model.state_dict() if k not in start
                         and set(k.split(".")[:-1]) & set(EVIDENCE_AT_INIT)})
        if gained:
            log(f"[train] init_from {cfg.run.init_from}: {', '.join(gained)} start at their initial values "
                f"and change the model's renders from the first step (model.depth_evidence)")
    if cfg.loss.class_balance > 0 and cfg.loss.class_weights is None:
        counts = label_counts(list(dataset.scenes.values()), model_cfg.num_classes, CLASS_BALANCE_VIEWS)
        cfg.loss.class_weights = class_weights_from_counts(counts, cfg.loss.class_balance, cfg.loss.class_weight_max)
        log(f"[train] class weights (loss.class_balance = {cfg.loss.class_balance}): "
            f"{min(cfg.loss.class_weights):.2f} to {max(cfg.loss.class_weights):.2f}; {label_shares(counts)}")
    if cfg.loss.class_weights is not None and len(cfg.loss.class_weights) != model_cfg.num_classes:
        raise ValueError(f"loss.class_weights has {len(cfg.loss.class_weights)} entries, the model "
                         f"{model_cfg.num_classes} classes")
    if info.distributed:
        model = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)

    writer, panel_data = None, None
    if info.is_main and cfg.run.image_every:
        panel_data = build_dataset(cfg.data, split=cfg.data.val_split, seed=cfg.run.seed, full_target=True,
                                   pairs_dir=out_dir)
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out_dir / "tensorboard"))
        import yaml
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        if resume_from is not None:
            print(f"[train] resumed from {resume_from} at step {step}")

    use_bf16 = cfg.run.bf16 and info.device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    per_epoch = sampler.batches_per_epoch()
    model.train()
    progress = tqdm(total=cfg.run.max_steps, initial=step, desc="train", disable=not info.is_main,
                    dynamic_ncols=True)
    batches = None
    t_start, rays_seen = time.perf_counter(), 0
    while step < cfg.run.max_steps:
        if batches is None or step % per_epoch == 0:
            epoch, offset = divmod(step, per_epoch)
            sampler.set_position(epoch, offset)
            dataset.set_epoch(epoch)
            # The loader's own generator (not the global RNG) seeds workers, so where in an
            # epoch we start does not shift the random stream the model consumes.
            loader = DataLoader(dataset, batch_size=cfg.optim.batch_size, sampler=sampler,
                                num_workers=cfg.data.num_workers, collate_fn=collate, drop_last=False,
                                generator=torch.Generator().manual_seed(cfg.run.seed * 7919 + epoch),
                                persistent_workers=False)
            batches = iter(loader)
        batch = next(batches)
        model_batch, targets = to_model_batch(batch, info.device, model_cfg)
        with autocast():
            outputs = model(model_batch)
            losses = viewseg_losses(outputs, targets, cfg.loss)
        loss = losses["total"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; last terms: "
                                     f"{ {k: float(v) for k, v in losses.items()} }")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        rays_seen += int(targets["target"]["labels"].numel())
        progress.update(1)

        if writer is not None and (step % cfg.run.log_every == 0 or step == cfg.run.max_steps):
            elapsed = time.perf_counter() - t_start
            for name, value in losses.items():
                writer.add_scalar(f"loss/{name}", float(value.detach()), step)
            writer.add_scalar("optim/lr", scheduler.get_last_lr()[0], step)
            writer.add_scalar("perf/target_rays_per_s", rays_seen * info.world_size / max(elapsed, 1e-9), step)
            progress.set_postfix(loss=f"{loss.item():.4f}")
        if writer is not None and cfg.run.image_every and step % cfg.run.image_every == 0:
            from training.panels import log_panel
            log_panel(writer, _unwrap(model), panel_data, step, info.device, out_dir / "panels")
            model.train()
        if step % cfg.run.checkpoint_every == 0 or step == cfg.run.max_steps:
            states = _gather_rng_states(info)
            if info.is_main:
                save_atomic({"format": FORMAT, "format_version": FORMAT_VERSION, "step": step,
                             "model": model_checkpoint(_unwrap(model)), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": states, "config": to_dict(cfg)},
                            ckpt_dir / f"step_{step}.pt")
                _prune_checkpoints(ckpt_dir, cfg.run.keep_checkpoints)
    progress.close()
    checksums = _replica_checksums(_unwrap(model), info)
    final = out_dir / "model.pt"
    if info.is_main:
        save_model(_unwrap(model), final, data=to_dict(cfg.data))  # eval reads the run's data settings
        writer.add_scalar("perf/train_seconds", time.perf_counter() - t_start, step)
        if info.distributed:
            write_text_atomic(out_dir / "replica_checksums.json", json.dumps(checksums))
            if len(set(checksums)) != 1:
                raise RuntimeError(f"DDP replicas diverged: parameter checksums {checksums}")
            print(f"[train] {info.world_size} replicas in sync (checksum {checksums[0]:.10e})")
        writer.close()
        print(f"[train] done: {step} steps, model at {final}")
    distributed.teardown()
    return final


def _replica_checksums(model: torch.nn.Module, info: distributed.DistInfo) -> list[float]:
    """A float64 sum over all parameters, from every rank (equal iff replicas agree)."""
    local = sum(p.detach().double().sum() for p in model.parameters()).item()
    if not info.distributed:
        return [local]
    gathered: list[Any] = [None] * info.world_size
    torch.distributed.all_gather_object(gathered, local)
    return gathered


def _gather_rng_states(info: distributed.DistInfo) -> list[dict]:
    """Every rank's RNG state (rank order), so each rank resumes its own random stream."""
    state = rng_state()
    if not info.distributed:
        return [state]
    gathered: list[Any] = [None] * info.world_size
    torch.distributed.all_gather_object(gathered, state)
    return gathered


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train ViewSeg (single process or under torchrun)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML file, e.g. training/configs/synthetic_small.yaml")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. run.max_steps=100")
    p.set_defaults(func=lambda args: train(load_config(TrainConfig, args.config, args.overrides)) and 0)


def main(argv: list[str] | None = None) -> int:
    """``python -m training.train`` (what torchrun starts): ``viewseg train``'s arguments and errors."""
    from viewseg_core.cli import OneLineParser, run_subcommand

    parser = OneLineParser(prog="python -m training.train")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    return run_subcommand(args.command, args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
