"""viewseg_core.model.prepared_cache: hits need the same key and the same objects, LRU order,
capacity 0, byte counts, and a real model's prepared maps render the same image from the cache."""
from __future__ import annotations

import threading

import pytest
import torch

from viewseg_core.model.prepared_cache import PreparedCache, tensor_bytes


class Calls:
    def __init__(self):
        self.built = 0

    def sources(self, tag):
        def build():
            self.built += 1
            return {"tag": tag, "t": torch.zeros(4)}
        return build


def prepare(sources):
    return (torch.ones(2, 3),)


def test_a_hit_needs_the_same_key_and_the_same_owner_objects():
    cache, calls = PreparedCache(2), Calls()
    feats_a, feats_b = torch.zeros(3), torch.zeros(3)   # equal values, different objects
    s1, p1, hit = cache.get((1, 2), [feats_a], calls.sources("a"), prepare)
    assert not hit and calls.built == 1
    s2, p2, hit = cache.get((1, 2), [feats_a], calls.sources("a"), prepare)
    assert hit and s2 is s1 and p2 is p1 and calls.built == 1
    _, _, hit = cache.get((1, 2), [feats_b], calls.sources("b"), prepare)   # re-encoded: same ids, new tensor
    assert not hit and calls.built == 2
    _, _, hit = cache.get((2, 1), [feats_b], calls.sources("c"), prepare)   # another order is another set
    assert not hit
    _, _, hit = cache.get((1, 2), [feats_b, feats_b], calls.sources("d"), prepare)  # owner count differs
    assert not hit
    st = cache.stats()
    assert (st.hits, st.misses, st.entries) == (1, 4, 2)


def test_least_recently_used_goes_first_and_capacity_zero_keeps_nothing():
    cache, calls = PreparedCache(2), Calls()
    o = object()
    for key in ("a", "b"):
        cache.get(key, [o], calls.sources(key), prepare)
    cache.get("a", [o], calls.sources("a"), prepare)          # a is now the most recent
    cache.get("c", [o], calls.sources("c"), prepare)          # evicts b
    assert cache.get("a", [o], calls.sources("a"), prepare)[2]
    assert not cache.get("b", [o], calls.sources("b"), prepare)[2]
    off = PreparedCache(0)
    assert not off.get("a", [o], calls.sources("a"), prepare)[2]
    assert not off.get("a", [o], calls.sources("a"), prepare)[2]
    assert off.stats().entries == 0 and off.stats().misses == 2
    cache.clear()
    assert (cache.stats().hits, cache.stats().misses, cache.stats().entries) == (0, 0, 0)
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        PreparedCache(-1)


def test_bytes_count_each_storage_once():
    x = torch.zeros(10, 10)                                    # 400 B
    y = torch.zeros(3, dtype=torch.float64)                   # 24 B
    assert tensor_bytes((x, x.view(100), x[2:], [y, {"not counted": y}], None, 3)) == 400 + 24
    cache = PreparedCache(1)
    cache.get("k", [], lambda: x, lambda s: (s.flatten(), y))
    assert cache.stats().nbytes == 424


def test_concurrent_misses_and_hits_are_safe():
    cache, calls, o = PreparedCache(3), Calls(), object()
    results = []

    def worker(i):
        for j in range(50):
            key = (i + j) % 5
            s, p, _ = cache.get(key, [o], calls.sources(key), prepare)
            results.append(s["tag"] == key)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = cache.stats()
    assert all(results) and st.hits + st.misses == 200 and st.entries == 3


def test_a_model_renders_the_same_image_from_cached_prepared_maps():
    """The cached (sources, prepared) pair of a real model, handed to render_query,
    gives exactly the image of a query that prepares its own."""
    from viewseg_core.model.fast import render_query
    from viewseg_core.model.viewseg import ModelConfig, ViewSeg

    torch.manual_seed(0)
    model = ViewSeg(ModelConfig(encoder="deeplabv3plus_resnet18", feature_dim=8, hidden_dim=16, n_blocks=1,
                                n_head_blocks=1, num_coarse=4, num_fine=4, n_harmonic_xyz=2, n_harmonic_dir=1,
                                view_pooling="mean_var", source_rgb=True, near=0.1, far=4.0)).eval()
    H, W, V = 24, 32, 2
    K = torch.tensor([[28.0, 0, 15.5], [0, 28.0, 11.5], [0, 0, 1]])
    c2w = torch.eye(4).expand(V, 4, 4).clone()
    c2w[1, 0, 3] = 0.2
    rgb = torch.rand(1, V, 3, H, W, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = model.encode_sources(rgb)

    def build():
        return model.make_sources(feats, K.expand(1, V, 3, 3), c2w[None], H, W, rgb=rgb)

    def prep(sources):
        with torch.no_grad():
            return model.renderer.prepare(sources)

    cache = PreparedCache(1)
    query = torch.eye(4)
    query[0, 3] = 0.1
    plain = render_query(model, K, query, H, W, build(), "fast")
    for expect_hit in (False, True):
        sources, prepared, hit = cache.get((0, 1), [feats], build, prep)
        assert hit == expect_hit
        out = render_query(model, K, query, H, W, sources, "fast", prepared=prepared)
        assert torch.equal(out.logits, plain.logits) and torch.equal(out.depth.nan_to_num(-1), plain.depth.nan_to_num(-1))
