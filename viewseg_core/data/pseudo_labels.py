"""Labels for a scene folder that has none, from a 2D segmenter: keyframes become training data.

A robot's saved keyframes (``~/save_keyframes``) and bags imported without a semantic topic
hold colour, depth and poses but no labels, and ViewSeg trains on labels. ``viewseg
pseudo-label IN --segmenter CKPT --out OUT`` writes a copy of the folder with each frame's
labels predicted by a 2D segmenter (``viewseg pretrain-2d``;
:class:`viewseg_core.segmenter.PseudoLabeler`), so the rooms a robot saw can be trained on
(``viewseg train ... data.root=...``). The copy's ``cameras.json`` says so (``meta.labels``:
``pseudo:<checkpoint>``, ``meta.pseudo_labels``: true), as bag2scene's pseudo-labels do,
because training on them teaches the segmenter's mistakes. Frames that have labels keep them
unless ``relabel``. The input is never modified; the output is written atomically.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from viewseg_core.data.scene_folder import SceneFolder, SceneFolderWriter, publish_folder, staging_folder


def pseudo_label_folder(source: str | Path, out: str | Path, labeler, relabel: bool = False,
                        progress: bool = True) -> dict[str, int]:
    """Copy the scene folder ``source`` to ``out`` with labels from ``labeler`` ([H, W, 3] uint8
    -> [H, W] class ids, e.g. a :class:`~viewseg_core.segmenter.PseudoLabeler`) for every frame
    without labels (every frame with ``relabel``).

    Returns:
        {"frames": ..., "predicted": ..., "kept": ...}: frames written, labelled by the
        segmenter, and whose own labels were kept.
    Raises:
        ValueError for ``out`` equal to or inside ``source``, or a path that holds anything but
        a scene folder (nothing is written then).
    """
    folder = SceneFolder(source)
    out = Path(out)
    if out.resolve() == folder.root.resolve() or folder.root.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out} is {folder.root} or inside it: the input folder is never modified")
    staging = staging_folder(out, "--out")
    counts = {"frames": 0, "predicted": 0, "kept": 0}
    try:
        meta = {**folder.meta, "labels": f"pseudo:{getattr(labeler, 'path', labeler)}", "pseudo_labels": True,
                "pseudo_labelled_from": str(folder.root)}
        with SceneFolderWriter(staging, scene=folder.name, meta=meta) as writer:
            for index in tqdm(range(len(folder)), desc="pseudo-label", unit="frame", disable=not progress):
                view = folder.load_view(index)
                if view.labels is None or relabel:
                    view = replace(view, labels=labeler(view.rgb))
                    counts["predicted"] += 1
                else:
                    counts["kept"] += 1
                view.meta = {k: v for k, v in (view.meta or {}).items() if k != "scene"}
                writer.add(view)
                counts["frames"] += 1
        publish_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts


__all__ = ["pseudo_label_folder"]
