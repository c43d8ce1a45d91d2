"""Throughput of the metric networks: I3D (FVD features) in clips/s and LPIPS in images/s.

    python bench/metrics.py                      # 16-frame clips at 224x224, this machine's threads
    python bench/metrics.py --batch-size 4 --repeats 5 --device cuda

Needs the pretrained weights (`opengenie weights fetch`).
"""

from __future__ import annotations

import argparse
import time

import torch

from opengenie.features.i3d import i3d_features, load_i3d
from opengenie.features.lpips import load_lpips


def _timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of `fn()` over `repeats` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=2, help="clips per I3D forward pass")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (FVD uses 16; at least 9)")
    parser.add_argument("--size", type=int, default=64, help="input frame size; resized to 224 inside")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, CPU threads {torch.get_num_threads()}")

    i3d = load_i3d(device)
    clips = torch.rand(args.batch_size, 3, args.frames, args.size, args.size, device=device) * 2 - 1
    seconds = _timed(lambda: i3d_features(i3d, clips, batch_size=args.batch_size), args.repeats, device)
    print(
        f"I3D   {args.batch_size} clips x {args.frames} frames ({args.size}px -> 224px): "
        f"{seconds:.2f} s/batch, {args.batch_size / seconds:.2f} clips/s"
    )

    images = torch.rand(16, 3, args.size, args.size, device=device) * 2 - 1
    for net in ("alexnet", "vgg16"):
        model = load_lpips(net, device)
        with torch.inference_mode():
            seconds = _timed(lambda: model(images, images.flip(-1)), args.repeats, device)
        print(f"LPIPS-{net:7s} 16 pairs at {args.size}px: {16 / seconds:.1f} pairs/s")


if __name__ == "__main__":
    main()
