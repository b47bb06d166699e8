"""The depth-camera model's statistics: noise sigma = k z^2, millimetre steps, range limit, hole
rate, edge dropout, unknown input, and seeding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from viewseg_core.data.depth_sensor import DepthSensorConfig, apply_sensor, edge_mask, hole_mask

CLEAN = dict(hole_rate=0.0, edge_dropout=0.0)


@pytest.mark.parametrize("z, k", [(1.0, 0.002), (3.0, 0.002), (5.0, 0.001), (6.0, 0.003)])
def test_noise_std_is_k_z_squared_on_a_flat_plane(z, k):
    plane = np.full((400, 500), z, np.float32)   # 200k pixels: std known to about 0.2%
    out = apply_sensor(plane, DepthSensorConfig(noise_k=k, max_range_m=0.0, **CLEAN), 0)
    assert np.isfinite(out).all()
    sigma = k * z * z
    # quantisation to 1 mm adds its own variance q^2 / 12 (visible at 1 m, where sigma is 2 mm)
    expected = np.sqrt(sigma ** 2 + 0.001 ** 2 / 12)
    assert out.std() == pytest.approx(expected, rel=0.02)
    assert out.mean() == pytest.approx(z, abs=4 * sigma / np.sqrt(out.size) + 1e-4)


def test_values_are_whole_millimetres_and_nothing_lies_beyond_max_range():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.3, 12.0, (120, 160)).astype(np.float32)
    out = apply_sensor(depth, DepthSensorConfig(max_range_m=8.0, **CLEAN), 5)
    good = out[np.isfinite(out)]
    mm = good.astype(np.float64) * 1000
    assert np.abs(mm - np.round(mm)).max() < 1e-3       # float32 of a whole number of millimetres
    assert good.max() <= 8.0 and good.min() > 0
    assert np.isnan(out[depth > 8.5]).all()            # far beyond range: no return, whatever the noise
    assert np.isfinite(out[depth < 7.5]).all()         # well within: always a return (no holes/edges here)
    # quantisation alone is rounding to the nearest millimetre
    exact = apply_sensor(np.array([[1.23449, 1.23451, 2.0]], np.float32),
                         DepthSensorConfig(noise_k=0.0, **CLEAN), 0)
    np.testing.assert_allclose(exact, [[1.234, 1.235, 2.0]], atol=1e-6)
    near = apply_sensor(np.full((4, 4), 0.2, np.float32), DepthSensorConfig(min_range_m=0.3, **CLEAN), 0)
    assert np.isnan(near).all()


@pytest.mark.parametrize("rate, radius", [(0.02, 1.5), (0.1, 1.5), (0.05, 3.0), (0.2, 0.0)])
def test_hole_fraction_matches_the_rate(rate, radius):
    plane = np.full((480, 640), 2.0, np.float32)
    out = apply_sensor(plane, DepthSensorConfig(hole_rate=rate, hole_radius_px=radius, edge_dropout=0.0), 3)
    missing = np.isnan(out).mean()
    # 307k pixels in blobs of <= 29: the blob count is in the thousands, so 10% relative is > 4 sigma
    assert missing == pytest.approx(rate, rel=0.1)
    mask = hole_mask((480, 640), rate, radius, np.random.default_rng(4))
    assert mask.mean() == pytest.approx(rate, rel=0.1)
    if radius >= 1.5:  # blobs, not salt: most missing pixels have a missing 4-neighbour
        inner = mask[1:-1, 1:-1]
        neighbour = mask[:-2, 1:-1] | mask[2:, 1:-1] | mask[1:-1, :-2] | mask[1:-1, 2:]
        assert (inner & neighbour).sum() > 0.8 * inner.sum()
    # borders get holes as often as the middle (centres are drawn beyond the image)
    assert mask[:, :8].mean() == pytest.approx(rate, rel=0.35)


def test_edge_pixels_of_a_step_are_dropped():
    depth = np.full((40, 60), 2.0, np.float32)
    depth[:, 30:] = 4.0                                    # a step between columns 29 and 30
    depth[10:12, 5:7] = 2.1                                # 5%: below the 10% threshold, not an edge
    edges = edge_mask(depth, 0.1)
    assert edges[:, 29].all() and edges[:, 30].all() and edges.sum() == 80
    out = apply_sensor(depth, DepthSensorConfig(noise_k=0.0, edge_dropout=1.0, hole_rate=0.0), 0)
    assert np.isnan(out[:, 29:31]).all()
    assert np.isfinite(out[:, :29]).all() and np.isfinite(out[:, 31:]).all()
    half = apply_sensor(np.tile(depth, (10, 1)), DepthSensorConfig(noise_k=0.0, edge_dropout=0.5,
                                                                   hole_rate=0.0), 0)
    dropped = np.isnan(half[:, 29:31]).mean()
    assert dropped == pytest.approx(0.5, abs=0.06) and np.isfinite(half[:, :29]).all()
    # an unknown neighbour is no edge
    hole = np.full((5, 5), 2.0, np.float32)
    hole[2, 2] = np.nan
    assert not edge_mask(hole, 0.1).any()


def test_unknown_input_stays_unknown_and_shapes_and_types_are_kept():
    depth = np.full((2, 3, 8, 10), 2.0, np.float32)
    depth[0, 0, 0, 0], depth[1, 2, 3, 4], depth[0, 1, 5, 5] = np.nan, 0.0, -1.0
    out = apply_sensor(depth, DepthSensorConfig(**CLEAN), 0)
    assert out.shape == depth.shape and out.dtype == np.float32
    assert np.isnan(out[0, 0, 0, 0]) and np.isnan(out[1, 2, 3, 4]) and np.isnan(out[0, 1, 5, 5])
    assert np.isfinite(out).sum() == depth.size - 3
    t = apply_sensor(torch.from_numpy(depth), DepthSensorConfig(**CLEAN), 0)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), out)          # same seed, numpy or torch: same draw


def test_same_seed_same_output_different_seed_different():
    depth = np.random.default_rng(0).uniform(0.5, 9.0, (60, 80)).astype(np.float32)
    cfg = DepthSensorConfig()
    a, b, c = apply_sensor(depth, cfg, 7), apply_sensor(depth, cfg, 7), apply_sensor(depth, cfg, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.isnan(a), np.isnan(c))
    both = np.isfinite(a) & np.isfinite(c)
    assert (a[both] != c[both]).mean() > 0.5
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    np.testing.assert_array_equal(apply_sensor(depth, cfg, g1), apply_sensor(depth, cfg, g2))


def test_config_checks():
    for bad in (dict(noise_k=-1.0), dict(hole_rate=1.0), dict(edge_dropout=1.5), dict(max_range_m=0.2, min_range_m=0.5),
                dict(quantization_m=float("nan")), dict(row_stride=0), dict(row_stride=2.0), dict(row_stride=True),
                dict(row_strides=(1, 0)), dict(row_strides=(2.0,)), dict(row_strides=4),
                dict(row_strides=(1, 2), row_stride=2), dict(row_band=0.0), dict(row_band=1.5),
                dict(row_bands=(0.5, 0.0)), dict(row_bands=0.5), dict(row_bands=(0.5,), row_band=0.5)):
        with pytest.raises(ValueError, match="depth_sensor"):
            DepthSensorConfig(**bad)


@pytest.mark.parametrize("stride", [2, 4])
def test_row_stride_keeps_every_nth_row_of_the_dense_measurement(stride):
    """A sparse sensor: rows 0, s, 2s, ... are the dense sensor's rows bit for bit (the stride
    draws nothing), every other row returns nothing."""
    depth = np.broadcast_to(np.linspace(2.0, 4.0, 40, dtype=np.float32), (2, 30, 40)).copy()   # a slanted wall
    dense = apply_sensor(depth, DepthSensorConfig(), 7)
    sparse = apply_sensor(depth, DepthSensorConfig(row_stride=stride), 7)
    kept = np.arange(30) % stride == 0
    np.testing.assert_array_equal(sparse[:, kept], dense[:, kept])
    assert np.isnan(sparse[:, ~kept]).all()
    assert np.isfinite(sparse[:, kept]).mean() > 0.5   # the kept rows still hold measurements


def test_row_strides_draw_each_images_stride_and_first_row_after_its_other_draws():
    """A mix of sensor densities: each image keeps the rows first, first + s, ... of the dense
    measurement of the same seed (drawn after its noise, holes and edges), and over many images
    every listed stride and every first row turns up about equally often."""
    depth = np.broadcast_to(np.linspace(2.0, 4.0, 40, dtype=np.float32), (30, 40)).copy()
    mixed_cfg = DepthSensorConfig(row_strides=(1, 2, 4))
    counts: dict[tuple[int, int], int] = {}
    for seed in range(600):
        dense = apply_sensor(depth, DepthSensorConfig(), seed)
        mixed = apply_sensor(depth, mixed_cfg, seed)
        rows = np.flatnonzero(np.isfinite(mixed).any(axis=1))
        stride = int(np.diff(rows).min()) if len(rows) > 1 else 1
        first = int(rows[0]) % stride
        kept = (np.arange(30) - first) % stride == 0
        np.testing.assert_array_equal(mixed[kept], dense[kept])
        assert np.isnan(mixed[~kept]).all()
        counts[stride, first] = counts.get((stride, first), 0) + 1
    assert set(counts) == {(1, 0), (2, 0), (2, 1), (4, 0), (4, 1), (4, 2), (4, 3)}
    by_stride = {s: sum(n for (t, _), n in counts.items() if t == s) for s in (1, 2, 4)}
    assert all(160 <= n <= 240 for n in by_stride.values()), by_stride            # 200 each expected
    assert all(30 <= counts[4, f] <= 70 for f in range(4)), counts                  # 50 each expected


def test_row_band_keeps_the_central_rows_and_row_bands_draws_one_per_image_last():
    """A LiDAR under a wider camera: with row_band 0.5 of 30 rows only rows 7..21 (15 rows,
    centred) return, the dense measurement's bit for bit; row_bands draws each image's band
    after every other draw (the strides' included), each listed band about equally often."""
    depth = np.broadcast_to(np.linspace(2.0, 4.0, 40, dtype=np.float32), (30, 40)).copy()
    dense = apply_sensor(depth, DepthSensorConfig(), 7)
    band = apply_sensor(depth, DepthSensorConfig(row_band=0.5), 7)
    kept = (np.arange(30) >= 7) & (np.arange(30) < 22)
    np.testing.assert_array_equal(band[kept], dense[kept])
    assert np.isnan(band[~kept]).all()
    assert np.isfinite(apply_sensor(depth, DepthSensorConfig(row_band=0.001), 7)).any(axis=1).sum() == 1
    counts = {1.0: 0, 0.5: 0}
    for seed in range(400):
        strided = apply_sensor(depth, DepthSensorConfig(row_strides=(1, 2)), seed)
        mixed = apply_sensor(depth, DepthSensorConfig(row_strides=(1, 2), row_bands=(1.0, 0.5)), seed)
        rows = np.flatnonzero(np.isfinite(mixed).any(axis=1))
        drawn = 0.5 if rows.min() >= 7 and rows.max() < 22 else 1.0
        inside = (np.arange(30) >= 7) & (np.arange(30) < 22) if drawn == 0.5 else np.ones(30, bool)
        np.testing.assert_array_equal(mixed[inside], strided[inside])
        assert np.isnan(mixed[~inside]).all()
        counts[drawn] += 1
    assert all(160 <= n <= 240 for n in counts.values()), counts          # 200 each expected
