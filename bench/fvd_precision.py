"""FVD with I3D in fp32 against I3D under bf16 autocast, on the same real CoinRun clips.

    python bench/fvd_precision.py --data data/coinrun-explore --clips 64

I3D is most of `opengenie eval`'s time on a CPU; bf16 halves it. This prints, for real-vs-real
(two disjoint halves) and real-vs-frozen-first-frame, the FVD of both precisions and the time of
each (interleaved, so a busy machine slows both alike).
"""

from __future__ import annotations

import argparse
import time

import torch

from opengenie.data import EpisodeClipDataset
from opengenie.evaluation.fvd import frechet_distance
from opengenie.features.i3d import i3d_features, load_i3d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = EpisodeClipDataset(args.data, seq_len=16, split=args.split)
    step = max(1, len(ds) // args.clips)
    video = torch.stack([ds[i]["video"] for i in range(0, len(ds), step)][:args.clips])  # (N, C, 16, H, W)
    frozen = video[:, :, :1].expand_as(video)
    i3d = load_i3d("cpu")
    feats, secs = {}, {"fp32": 0.0, "bf16": 0.0}
    for name, clips in (("real", video), ("frozen", frozen)):
        for precision in ("fp32", "bf16"):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                feats[name, precision] = i3d_features(i3d, clips).float()
            secs[precision] += time.perf_counter() - started
    a, b = torch.arange(0, len(video), 2), torch.arange(1, len(video), 2)
    print(f"{len(video)} clips of 16 frames from {args.data} ({args.split})")
    print("| precision | real vs real (halves) | real vs frozen first frame | I3D s/clip |")
    print("|---|---|---|---|")
    for precision in ("fp32", "bf16"):
        real, frozen_f = feats["real", precision], feats["frozen", precision]
        print(f"| {precision} | {frechet_distance(real[a], real[b]):.1f} | {frechet_distance(real, frozen_f):.1f} | "
              f"{secs[precision] / (2 * len(video)):.2f} |")


if __name__ == "__main__":
    main()
