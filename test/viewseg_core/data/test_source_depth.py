"""Source depth as a model input (RGB-D keyframes): the none/clean/sensor modes of the dataset,
its seeding, whole-view dropout, unknown values, and that the RGB path is untouched."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from viewseg_core.data.dataset import DatasetConfig, ViewSegDataset, collate, known_depth
from viewseg_core.data.depth_sensor import DepthSensorConfig, apply_sensor
from viewseg_core.data.pairs import PairConfig, mine_pairs
from viewseg_core.data.synth import SynthConfig, write_scene

H, W = 30, 40


@pytest.fixture(scope="module")
def scene_and_pairs(tmp_path_factory):
    folder = write_scene(tmp_path_factory.mktemp("sd") / "scene", 21, SynthConfig(views=12, width=W, height=H))
    pairs = mine_pairs(folder, PairConfig(num_sources=2, min_overlap=0.05, min_baseline=0.3, min_rotation_deg=15.0))
    assert len(pairs) >= 3
    return folder, pairs


def _ds(folder, pairs, **changes) -> ViewSegDataset:
    cfg = DatasetConfig(num_sources=2, image_size=(H, W), target_rays=50, source_rays=10, **changes)
    return ViewSegDataset([folder], pairs, cfg)


def test_none_is_the_paper_path_bit_for_bit(scene_and_pairs):
    folder, pairs = scene_and_pairs
    plain, sensor = _ds(folder, pairs)[1], _ds(folder, pairs, source_depth="sensor", source_depth_dropout=0.5)[1]
    assert "source_depth_input" not in plain and "source_depth_input" in sensor
    # the source-depth draws use their own generators: sources, rays and truth are unchanged
    for key, value in plain.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, sensor[key]) or (value.is_floating_point() and
                                                         torch.equal(value.nan_to_num(-1), sensor[key].nan_to_num(-1))), key
        else:
            assert value == sensor[key], key


def test_clean_is_the_truth_with_unknown_as_nan(scene_and_pairs):
    folder, pairs = scene_and_pairs
    ex = _ds(folder, pairs, source_depth="clean")[0]
    truth, given = ex["source_depth"], ex["source_depth_input"]
    assert given.shape == truth.shape and given.dtype == torch.float32
    known = torch.isfinite(truth) & (truth > 0)
    assert torch.equal(given[known], truth[known]) and torch.isnan(given[~known]).all()
    d = torch.tensor([[1.0, 0.0, -2.0], [float("nan"), float("inf"), 3.0]])
    assert torch.equal(torch.isnan(known_depth(d)), torch.tensor([[False, True, True], [True, True, False]]))


def test_sensor_is_the_sensor_model_seeded_per_view(scene_and_pairs):
    folder, pairs = scene_and_pairs
    sensor = DepthSensorConfig(noise_k=0.003, hole_rate=0.05)
    ds = _ds(folder, pairs, source_depth="sensor", depth_sensor=sensor)
    ex = ds[0]
    for v, (view_id, truth) in enumerate(zip(ex["source_ids"], ex["source_depth"])):
        expected = apply_sensor(truth, sensor, ds.view_depth_rng(ex["scene"], view_id))
        assert torch.equal(ex["source_depth_input"][v].nan_to_num(-1), expected.nan_to_num(-1))
    given, truth = ex["source_depth_input"], ex["source_depth"]
    both = torch.isfinite(given) & torch.isfinite(truth)
    assert 0 < (given[both] - truth[both]).abs().max() < 0.2   # noise of a few mm to cm at room depths
    assert torch.isnan(given).float().mean() > torch.isnan(truth).float().mean()  # holes and edges
    # reproducible: the same example twice, a fresh dataset, and a DataLoader with workers
    again = _ds(folder, pairs, source_depth="sensor", depth_sensor=sensor)[0]
    assert torch.equal(again["source_depth_input"].nan_to_num(-1), given.nan_to_num(-1))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate)
    first = next(iter(loader))
    assert torch.equal(first["source_depth_input"][0].nan_to_num(-1), given.nan_to_num(-1))
    # a new epoch measures again; a view measures the same in every example of an epoch
    ds.set_epoch(1)
    later = ds[0]["source_depth_input"]
    assert not torch.equal(later.nan_to_num(-1), given.nan_to_num(-1))
    ds.set_epoch(0)
    seen: dict[str, torch.Tensor] = {}
    for i in range(len(ds)):
        e = ds[i]
        for view_id, d in zip(e["source_ids"], e["source_depth_input"]):
            if view_id in seen:
                assert torch.equal(seen[view_id].nan_to_num(-1), d.nan_to_num(-1)), view_id
            seen[view_id] = d
    # another base seed measures differently
    other = _ds(folder, pairs, source_depth="sensor", depth_sensor=sensor, seed=1)
    other_ids = other[0]["source_ids"]
    assert other_ids and not torch.equal(
        apply_sensor(ex["source_depth"][0], sensor, other.view_depth_rng(ex["scene"], ex["source_ids"][0])).nan_to_num(-1),
        given[0].nan_to_num(-1))


def test_dropout_drops_whole_views_at_the_rate(scene_and_pairs):
    folder, pairs = scene_and_pairs
    ds = _ds(folder, pairs, source_depth="clean", source_depth_dropout=0.3)
    dropped = kept = 0
    for epoch in range(12):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            e = ds[i]
            for truth, given in zip(e["source_depth"], e["source_depth_input"]):
                if torch.isnan(given).all():
                    dropped += 1
                else:
                    kept += 1
                    assert torch.equal(given.nan_to_num(-1), known_depth(truth).nan_to_num(-1))
    n = dropped + kept
    assert n >= 60 and dropped / n == pytest.approx(0.3, abs=3 * (0.21 / n) ** 0.5 + 0.02)
    assert _ds(folder, pairs, source_depth="clean", source_depth_dropout=1.0)[0]["source_depth_input"].isnan().all()


def test_config_checks():
    with pytest.raises(ValueError, match="source_depth must be one of"):
        DatasetConfig(source_depth="lidar")
    with pytest.raises(ValueError, match="source_depth_dropout"):
        DatasetConfig(source_depth_dropout=1.5)
    assert dataclasses.replace(DatasetConfig(), source_depth="sensor").depth_sensor == DepthSensorConfig()
