"""Properties of the ST-transformer and its attention."""

import torch

from opengenie.nn.attention import Attention, KVCache
from opengenie.nn.blueprint import build
from opengenie.nn.st_transformer import STBlock, STTransformer


def test_block_shapes():
    """A block maps (B, T, N, D) to the same shape."""
    x = torch.randn(2, 5, 16, 32)
    assert STBlock(32, 4)(x).shape == x.shape


def test_temporal_causality_of_stack():
    """Perturbing frame t changes no output at frames < t."""
    torch.manual_seed(0)
    net = STTransformer(32, 3, 4, qk_norm=True).eval()
    x = torch.randn(2, 6, 9, 32)
    y = net(x)
    x2 = x.clone()
    x2[:, 3] += torch.randn_like(x2[:, 3])
    y2 = net(x2)
    assert torch.allclose(y[:, :3], y2[:, :3], atol=1e-6)
    assert not torch.allclose(y[:, 3:], y2[:, 3:], atol=1e-3)


def test_spatial_attention_mixes_within_frame_only():
    """Changing one token of frame t changes other tokens of frame t, not other frames before it."""
    torch.manual_seed(0)
    block = STBlock(32, 4).eval()
    x = torch.randn(1, 4, 8, 32)
    x2 = x.clone()
    x2[0, 2, 0] += torch.randn(32)
    y, y2 = block(x), block(x2)
    assert not torch.allclose(y[0, 2, 1:], y2[0, 2, 1:], atol=1e-4)
    assert torch.allclose(y[0, :2], y2[0, :2], atol=1e-6)


def test_cached_attention_equals_full_attention():
    """Feeding frames one at a time through a KV cache gives the same outputs as one pass."""
    torch.manual_seed(0)
    attn = Attention(32, 4, causal=True, qk_norm=True, rope=True).eval()
    x = torch.randn(3, 7, 32)
    full = attn(x)
    cache = KVCache()
    cache.write = True
    steps = [attn(x[:, :3], cache)] + [attn(x[:, t:t + 1], cache) for t in range(3, 7)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    assert len(cache) == 7


def test_cache_read_without_write_leaves_it_unchanged():
    """With write=False the cache is read but not extended (MaskGIT steps re-run one frame)."""
    attn = Attention(16, 2, causal=True, rope=True)
    cache = KVCache()
    cache.write = True
    attn(torch.randn(1, 3, 16), cache)
    cache.write = False
    attn(torch.randn(1, 1, 16), cache)
    assert len(cache) == 3 and cache.position(attn) == 3


def test_cache_window_drops_oldest_frames():
    """A cache with max_frames keeps only the newest frames."""
    attn = Attention(16, 2, causal=True, rope=True)
    cache = KVCache(max_frames=4)
    cache.write = True
    for _ in range(6):
        attn(torch.randn(2, 1, 16), cache)
    assert len(cache) == 4 and cache.position(attn) == 6


def test_blueprint_space_time_block_with_conditioning():
    """The seed's space-time_attn block takes (B, D, T, H, W) and external conditioning."""
    desc = (("space-time_attn", {"n_rep": 2, "n_embd": 32, "n_head": 4, "d_head": 8, "has_ext": True,
                                 "time_attn_kw": {"key_dim": 5}}),)
    net = build(desc)
    assert len(net.blocks) == 2
    x = torch.randn(2, 32, 4, 3, 3)
    assert net(x, cond=torch.randn(2, 4, 5)).shape == x.shape


def test_rotary_is_the_complex_rotation_of_channel_pairs():
    """RoPE in real arithmetic equals multiplying each channel pair (2j, 2j+1), read as a complex
    number, by e^{i·pos·θ_j}; a tensor start (as a cache keeps it) equals an int one."""
    from opengenie.nn.attention import rotary, rotary_frequencies

    x, freqs = torch.randn(2, 3, 5, 8), rotary_frequencies(8)
    pos = torch.arange(4, 9, dtype=torch.float32)
    turn = torch.polar(torch.ones(5, 4), torch.outer(pos, freqs))
    expected = torch.view_as_real(torch.view_as_complex(x.reshape(2, 3, 5, 4, 2)) * turn).flatten(-2)
    torch.testing.assert_close(rotary(x, 4, freqs), expected)
    torch.testing.assert_close(rotary(x, torch.tensor(4), freqs), expected)


def test_a_full_cache_keeps_its_shapes():
    """Past max_frames the ring overwrites the oldest slot: buffers never grow, so a compiled
    step sees the same shapes forever."""
    attn = Attention(16, 2, causal=True, rope=True)
    cache = KVCache(max_frames=3)
    with cache.appending():
        attn(torch.randn(1, 2, 16), cache)
        shapes = {tuple(t.shape) for t in cache._ring[id(attn)]}
        for _ in range(7):
            attn(torch.randn(1, 1, 16), cache)
    assert {tuple(t.shape) for t in cache._ring[id(attn)]} == shapes == {(1, 2, 4, 8)}
    assert len(cache) == 3 and int(cache.position(attn)) == 9


def test_a_full_cache_attends_to_the_newest_frames():
    """Long past max_frames, a cached step of one attention layer gives what attending afresh
    to just the newest max_frames + 1 frames gives: the ring drops exactly the oldest frame
    (RoPE makes only distances matter)."""
    torch.manual_seed(0)
    attn = Attention(32, 4, causal=True, qk_norm=True, rope=True).eval()
    x = torch.randn(2, 20, 32)
    cache = KVCache(max_frames=4)
    with torch.no_grad(), cache.appending():
        attn(x[:, :3], cache)
        for t in range(3, 20):
            step = attn(x[:, t:t + 1], cache)
            afresh = attn(x[:, max(0, t - 4):t + 1])[:, -1:]
            torch.testing.assert_close(step, afresh, atol=1e-5, rtol=0)
