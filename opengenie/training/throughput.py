"""How fast training runs: model FLOPs of a step, the device's measured matmul peak, MFU.

MFU (model FLOPs utilisation, PaLM App. B) = model FLOPs per second / the device's peak.
The peak is *measured* here (the best rate of large square matmuls), not read from a data
sheet, so the number means the same on a laptop CPU and on an H100. Model FLOPs of a step are
counted by torch's FlopCounterMode on one clip: forward + backward ≈ 3 × forward for the
trained parts, 1 × forward for frozen ones (the stage-2 tokenizer).
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_aten = torch.ops.aten


def _sdpa_cpu(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode knows the GPU attention kernels but not the CPU one.
_CUSTOM = {_aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu}


def count_flops(fn, *args, **kwargs) -> int:
    """FLOPs (multiply-adds count 2) of running `fn(*args, **kwargs)`."""
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def step_flops_per_clip(module, batch: dict) -> float:
    """Model FLOPs of one training step of a `GenieStage`, per clip of `batch`.

    Runs the stage's loss once on the first clip, in eval mode and under no_grad, with the
    global random streams restored afterwards: the run being measured is left exactly as it was.
    """
    clip = {k: v[:1] if torch.is_tensor(v) else v for k, v in batch.items()}
    device = clip["video"].device
    was = module.training
    module.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            generator = torch.Generator(device=device).manual_seed(0)
            total = count_flops(module.compute_loss, clip, generator)
            frozen = count_flops(module.frozen_forward, clip)
    finally:
        module.train(was)
    return 3.0 * (total - frozen) + frozen


def precision_dtype(precision: str | int | None) -> torch.dtype:
    """The matmul dtype of a Lightning precision setting ("bf16-mixed", "32-true", ...)."""
    p = str(precision)
    if p.startswith("bf16"):
        return torch.bfloat16
    if p.startswith("16"):
        return torch.float16
    return torch.float32


def measure_peak_flops(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                       size: int = 2048, seconds: float = 1.0) -> float:
    """The best FLOP/s of `size`² matmuls in `dtype` on `device`, over ~`seconds` of trials."""
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=generator, device=device).to(dtype)
    b = torch.randn(size, size, generator=generator, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b  # warm-up: kernel selection, thread pool start
    sync()
    reps = 1
    best, deadline = 0.0, time.perf_counter() + seconds
    while True:
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        dt = time.perf_counter() - t
        best = max(best, 2 * size**3 * reps / dt)
        if time.perf_counter() > deadline:
            return best
        reps = max(1, min(reps * 2, int(0.2 * reps / max(dt, 1e-9))))  # aim at ~0.2 s per trial
