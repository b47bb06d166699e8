"""One scene root that is the union of several ``viewseg synth`` datasets' splits.

    python scripts/union_splits.py --out data/segmenter_rooms \
        data/synthetic_small data/synthetic_medium data/synthetic_large --val-from data/synthetic_small

Scene folders are symbolic links named ``<dataset>__<scene>``. ``viewseg synth`` names now
carry the seed (``synth_s<seed>_<i>``), but datasets written before that or with
``--legacy-names`` (``synth_<i>``, e.g. the data/synthetic_* sets of docs/results.md) and two
roots drawn with the same seed reuse scene names, so the root's folder name is kept as a
prefix (enough for ``viewseg pretrain-2d``, which names views by folder). The scene name inside
each folder's ``cameras.json`` is not changed, so when two roots share scene names the union
is refused by ``viewseg train``/``eval`` (``training.data.load_scenes``: duplicate scene name)
and this script warns on stderr. ``splits.json`` lists the union of every root's ``train``
split and the ``val`` and ``test`` splits of ``--val-from`` only. Used to train the 2D segmenter (CloudSeg
and the oracle) on every room the ViewSeg reference model saw (docs/results.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from viewseg_core.data.scene_folder import SceneFolder  # noqa: E402
from viewseg_core.data.synth.generate import SPLITS_FILE, read_splits  # noqa: E402


def union(out: Path, roots: list[Path], val_from: Path | None) -> dict[str, list[str]]:
    """Write the links and ``splits.json`` under ``out``; returns the splits."""
    out.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for root in roots:
        own = read_splits(root)
        wanted = ["train"] + (["val", "test"] if val_from is not None and root.resolve() == val_from.resolve() else [])
        for split in wanted:
            for scene in own.get(split, []):
                name = f"{root.name}__{scene}"
                link = out / name
                target = (root / scene).resolve()
                if not target.is_dir():
                    raise ValueError(f"{root / SPLITS_FILE} lists {scene}, which is not a folder under {root}")
                if link.is_symlink() and link.resolve() != target:
                    raise ValueError(f"{link} already points to {link.resolve()}, not {target}")
                if not link.is_symlink():
                    link.symlink_to(target)
                splits[split].append(name)
    shared = _shared_scene_names(out, [n for names in splits.values() for n in names])
    if shared:
        print(f"warning: {len(shared)} scene name(s) occur in more than one root (e.g. {shared[0]!r}: datasets "
              f"written before `viewseg synth` names carried the seed, or of one seed twice); "
              f"viewseg pretrain-2d reads the union, viewseg train/eval refuse it", file=sys.stderr)
    (out / SPLITS_FILE).write_text(json.dumps({
        "format_version": 1, "source": "scripts/union_splits.py",
        "roots": [str(r) for r in roots], "val_from": str(val_from) if val_from else None,
        "splits": splits}, indent=1))
    return splits


def _shared_scene_names(out: Path, links: list[str]) -> list[str]:
    """Scene names (``cameras.json``) that more than one linked folder carries."""
    seen: dict[str, int] = {}
    for link in links:
        name = SceneFolder(out / link).name
        seen[name] = seen.get(name, 0) + 1
    return sorted(n for n, k in seen.items() if k > 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="+", type=Path, help="dataset roots holding splits.json")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--val-from", type=Path, default=None, help="the root whose val/test splits are kept")
    args = p.parse_args(argv)
    try:
        splits = union(args.out, args.roots, args.val_from)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: len(v) for k, v in splits.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
