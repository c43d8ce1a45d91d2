"""Ready-made blueprints (the seed README's presets), for `opengenie.nn.blueprint.build`.

    from opengenie import MAGVIT2_ENC_DESC, MAGVIT2_DEC_DESC
    VideoTokenizer(enc_desc=MAGVIT2_ENC_DESC, dec_desc=MAGVIT2_DEC_DESC, d_codebook=18, ...)

The presets are tuples of `(name, kwargs)` whose kwargs are read-only dicts: the original
Open-Genie builder popped keys out of its shared preset dicts, so the second network built
from a preset differed from the first. Here neither `build` (which works on a deep copy) nor
a caller can change a preset; derive a variant with `{**kwargs, "in_channels": 32}`.
"""

from __future__ import annotations

import copy
from typing import Any, NoReturn


class FrozenKwargs(dict):
    """A dict that refuses changes. Copies (`copy.deepcopy`, `dict(...)`, `{**...}`) are plain
    dicts that may be changed freely; it pickles and converts to JSON like a dict."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("blueprint presets are read-only; change a copy: {**kwargs, 'key': value}")

    __setitem__ = __delitem__ = __ior__ = _refuse  # type: ignore[assignment]
    pop = popitem = clear = update = setdefault = _refuse  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict) -> dict:
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> tuple:
        # dict's default pickling re-inserts items one by one, which __setitem__ refuses.
        return (FrozenKwargs, (dict(self),))


def _freeze(kwargs: dict[str, Any]) -> FrozenKwargs:
    return FrozenKwargs({k: _freeze(v) if isinstance(v, dict) else v for k, v in kwargs.items()})


def _frozen(*blocks: tuple[str, dict[str, Any]]) -> tuple[tuple[str, FrozenKwargs], ...]:
    return tuple((name, _freeze(kwargs)) for name, kwargs in blocks)


# MagViT-2 encoder: 3 × (T, H, W) video → 18 × (T/2, H/4, W/4), the shape of the seed README's
# own encoder. Causal in time throughout (frames grouped in pairs at the time down-sampling).
# Learned, strided down-sampling as in MagViT-2 (§3.2), residual stages in between.
MAGVIT2_ENC_DESC = _frozen(
    ("causal", {"in_channels": 3, "out_channels": 64, "kernel_size": 3}),
    ("residual", {"in_channels": 64, "num_groups": 8, "use_causal": True}),
    ("spacetime_downsample", {"in_channels": 64, "out_channels": 128, "kernel_size": 3,
                              "time_factor": 1, "space_factor": 2}),  # (T, H/2, W/2)
    ("residual", {"n_rep": 2, "in_channels": 128, "num_groups": 8, "use_causal": True}),
    ("spacetime_downsample", {"in_channels": 128, "out_channels": 256, "kernel_size": 3,
                              "time_factor": 2, "space_factor": 2}),  # (T/2, H/4, W/4)
    ("residual", {"n_rep": 2, "in_channels": 256, "num_groups": 8, "use_causal": True}),
    ("proj_out", {"in_channels": 256, "out_channels": 18, "num_groups": 8, "kernel_size": 3}),
)

# MagViT-2 decoder, the mirror image: 18 × (T/2, H/4, W/4) codes → 3 × (T, H, W) video.
# Up-sampling is a conv followed by depth-to-space/time (MagViT-2 §3.2), so latent frame t
# becomes frames 2t, 2t+1 and no output frame reads a later latent frame.
MAGVIT2_DEC_DESC = _frozen(
    ("causal", {"in_channels": 18, "out_channels": 256, "kernel_size": 3}),
    ("residual", {"n_rep": 2, "in_channels": 256, "num_groups": 8, "use_causal": True}),
    ("residual", {"in_channels": 256, "out_channels": 128, "num_groups": 8, "use_causal": True}),
    ("spacetime_upsample", {"in_channels": 128, "kernel_size": 3,
                            "time_factor": 2, "space_factor": 2}),  # (T, H/2, W/2)
    ("residual", {"n_rep": 2, "in_channels": 128, "num_groups": 8, "use_causal": True}),
    ("residual", {"in_channels": 128, "out_channels": 64, "num_groups": 8, "use_causal": True}),
    ("spacetime_upsample", {"in_channels": 64, "kernel_size": 3,
                            "time_factor": 1, "space_factor": 2}),  # (T, H, W)
    ("residual", {"in_channels": 64, "num_groups": 8, "use_causal": True}),
    ("proj_out", {"in_channels": 64, "out_channels": 3, "num_groups": 8, "kernel_size": 3}),
)

# Latent action encoder over tokens of width 256 (the seed README's LatentAction example).
# It halves space after its first attention stack, because the seed's decoder doubles space
# (`spacetime_upsample`, space_factor 2) after its own first stack: the pair cancels out.
LATENT_ACT_ENC = _frozen(
    ("space-time_attn", {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16}),
    ("spacetime_downsample", {"in_channels": 256, "kernel_size": 3, "time_factor": 1, "space_factor": 2}),
    ("space-time_attn", {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16}),
)

# The matching decoder, as written in the seed README: conditioned on one latent action of
# width 8 per frame (`has_ext`), it doubles space back.
LATENT_ACT_DEC = _frozen(
    ("space-time_attn", {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16, "has_ext": True,
                         "time_attn_kw": {"key_dim": 8}}),
    ("spacetime_upsample", {"in_channels": 256, "kernel_size": 3, "time_factor": 1, "space_factor": 2}),
    ("space-time_attn", {"n_rep": 2, "n_embd": 256, "n_head": 4, "d_head": 16, "has_ext": True,
                         "time_attn_kw": {"key_dim": 8}}),
)
