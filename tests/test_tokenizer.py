"""Properties of the ST-ViViT video tokenizer."""

from dataclasses import replace

import pytest
import torch

from opengenie import VideoTokenizer, presets
from opengenie.nn.attention import KVCache
from opengenie.tokenizer import same_tokens


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return VideoTokenizer(presets.tiny().tokenizer).eval()


@pytest.mark.parametrize("name", ["tiny", "coinrun"])
def test_shapes_for_every_preset(name):
    """tokenize/decode/decode_ids shapes follow the preset's patch size and code width."""
    cfg = presets.get(name).tokenizer
    tok = VideoTokenizer(cfg).eval()
    video = torch.rand(1, 3, 2, 64, 64) * 2 - 1
    with torch.no_grad():
        codes, ids = tok.tokenize(video)
        h, w = cfg.grid
        assert codes.shape == (1, cfg.code_dim, 2, h, w)
        assert ids.shape == (1, 2, h, w) and ids.dtype == torch.int64
        assert tok.decode(codes).shape == video.shape
        assert tok.decode_ids(ids).shape == video.shape


def test_encoder_is_causal_in_time(tiny):
    """Perturbing frame t leaves the codes of every frame < t unchanged."""
    video = torch.rand(1, 3, 6, 64, 64) * 2 - 1
    with torch.no_grad():
        z = tiny.quantize(video).codes
        video2 = video.clone()
        video2[:, :, 4] = torch.rand_like(video2[:, :, 4]) * 2 - 1
        z2 = tiny.quantize(video2).codes
    assert torch.allclose(z[:, :4], z2[:, :4], atol=1e-5)
    assert not torch.allclose(z[:, 4:], z2[:, 4:], atol=1e-3)


@pytest.mark.parametrize("head", [False, True])
def test_cached_decoding_equals_full_decoding(tiny, head):
    """Decoding frame by frame through a cache equals decoding the whole clip, with a pixel head
    too (it works frame by frame)."""
    tokenizer = tiny
    if head:
        tokenizer = _with_head(tiny)
        torch.nn.init.normal_(tokenizer.pixel_head.out[-1].weight, std=0.1)  # away from its zero start
    video = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    with torch.no_grad():
        ids = tokenizer.tokenize(video)[1]
        full = tokenizer.decode_ids(ids)
        cache = KVCache()
        cache.write = True
        parts = [tokenizer.decode_ids(ids[:, :2], cache)] + [tokenizer.decode_ids(ids[:, t:t + 1], cache)
                                                             for t in range(2, 5)]
    assert torch.allclose(torch.cat(parts, dim=2), full, atol=1e-4)


def test_forward_returns_loss_and_parts(tiny):
    """The forward gives a scalar loss and a record whose parts add up to it."""
    loss, parts = tiny(torch.rand(2, 3, 3, 64, 64) * 2 - 1)
    assert loss.dim() == 0
    assert torch.allclose(loss, parts.recon + parts.quant)
    assert 1 <= parts.perplexity.item() <= tiny.config.codebook_size


def test_tiny_tokenizer_overfits_one_clip():
    """Reconstruction MSE on one clip falls at least 10x within a few hundred steps."""
    torch.manual_seed(0)
    tok = VideoTokenizer(presets.tiny().tokenizer)
    from opengenie.data.synthetic import moving_square

    video, _, _ = moving_square(1, 4, seed=3)
    opt = torch.optim.AdamW(tok.parameters(), lr=3e-3)
    first = None
    for step in range(300):
        loss, parts = tok(video)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else parts.recon.item()
    last = parts.recon.item()
    print(f"overfit MSE first={first:.4f} last={last:.5f}")
    assert last < first / 10


@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 4, 64, 64), "add a batch axis"),
    (torch.rand(1, 4, 2, 64, 64), "got 4 channels"),
    (torch.randint(0, 255, (1, 3, 2, 64, 64), dtype=torch.uint8), "scale uint8"),
    (torch.rand(1, 3, 2, 60, 64), "divisible by patch_size=8"),
    (torch.rand(1, 3, 2, 64, 64) * 255, "values in \\[-1, 1\\]"),
    (torch.rand(1, 3, 2, 32, 32), "frames of size"),
])
def test_bad_input_gives_actionable_error(tiny, bad, message):
    """Wrong rank, channels, dtype, patch divisibility, size or value range → a clear ValueError."""
    with pytest.raises(ValueError, match=message):
        tiny.tokenize(bad)


def test_nan_input_raises():
    """A NaN in the input cannot reach the model silently (a NaN loss is the training loop's
    to catch: tests/test_training.py::test_non_finite_loss_names_the_step)."""
    tok = VideoTokenizer(presets.tiny().tokenizer)
    video = torch.rand(1, 3, 2, 64, 64) * 2 - 1
    video[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="values in"):
        tok(video)


def _with_head(tokenizer: VideoTokenizer, channels: int = 8, blocks: int = 1) -> VideoTokenizer:
    """`tokenizer` with a pixel head grown on its decoder, its other weights copied."""
    grown = VideoTokenizer(replace(tokenizer.config, pixel_head_channels=channels, pixel_head_blocks=blocks)).eval()
    missing, unexpected = grown.load_state_dict(tokenizer.state_dict(), strict=False)
    assert missing and all(k.startswith("pixel_head.") for k in missing) and not unexpected
    return grown


def test_pixel_head_starts_as_its_decoder_and_then_draws_across_patches(tiny):
    """A head grown on a decoder gives the same frames and ids at first; once trained a step, it
    changes the frames, and a pixel's change reaches past its own patch (3×3 convolutions)."""
    grown = _with_head(tiny)
    video = torch.rand(1, 3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(grown.tokenize(video)[1], tiny.tokenize(video)[1])
        assert torch.allclose(grown.reconstruct(video), tiny.reconstruct(video), atol=1e-6)
    assert same_tokens(grown.config, tiny.config)
    assert not same_tokens(replace(tiny.config, codebook_size=128), tiny.config)
    opt = torch.optim.SGD(grown.pixel_head.parameters(), lr=1.0)
    grown.train()
    grown(video)[0].backward()
    opt.step()
    grown.eval()
    with torch.no_grad():
        assert not torch.allclose(grown.reconstruct(video), tiny.reconstruct(video), atol=1e-4)
        ids = grown.tokenize(video)[1]
        codes = grown.quantizer.embed(ids).movedim(-1, 1)  # (B, D, T, H', W')
        tokens = grown.decoder(grown.from_code(codes.flatten(3).permute(0, 2, 3, 1)) + grown.decoder_pos)
        patches = grown.unpatch(tokens)
        nudged = patches.clone()
        nudged[..., 8, 8] += 1.0  # one pixel at the corner of patch (1, 1)
        moved = (grown.pixel_head(tokens, nudged) - grown.pixel_head(tokens, patches))[0, :, 0].abs().sum(0)
    assert moved[7, 7] > 0 and moved[:8, :8].sum() > 0  # the neighbouring patch (0, 0) changed


@pytest.mark.parametrize("fields, message", [
    ({"pixel_head_channels": -1}, "pixel_head_channels must be"),
    ({"pixel_head_blocks": -2}, "pixel_head_blocks must be"),
    ({"pixel_head_channels": 8.5}, "pixel_head_channels"),
])
def test_pixel_head_config_is_checked(fields, message):
    """A negative or fractional head size is refused when the config is built."""
    with pytest.raises(ValueError, match=message):
        replace(presets.tiny().tokenizer, **fields)
