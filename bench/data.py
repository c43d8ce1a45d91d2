"""Data pipeline throughput: CoinRun generation, bytes per frame on disk, clip loading.

    python bench/data.py [--levels 8] [--steps 1000] [--workers 2] [--clips 2000]

Prints one line per measurement. Generation is timed end to end (procgen start-up included);
clip loading reads 16-frame clips through a DataLoader with 0 and 2 workers, from stored
(uncompressed) and compressed episodes and from tar shards.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader


def _size(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def _clips_per_s(ds, workers: int, clips: int, shuffle: bool) -> float:
    kwargs = dict(batch_size=16, num_workers=workers)
    if shuffle:
        kwargs.update(shuffle=True, generator=torch.Generator().manual_seed(0))
    n, start = 0, None
    for batch in DataLoader(ds, **kwargs):
        if start is None:  # exclude worker start-up: time from the first batch on
            start = time.perf_counter()
            continue
        n += batch["video"].shape[0]
        if n >= clips:
            break
    return n / (time.perf_counter() - start)


def main() -> None:
    from opengenie.data import EpisodeClipDataset, ShardClipDataset, generate_coinrun, rollout_level, write_shards

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2, help="generation processes")
    ap.add_argument("--clips", type=int, default=2000, help="clips per loading measurement")
    ap.add_argument("--seq-len", type=int, default=16)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = args.levels * args.steps
        t = time.perf_counter()
        rollout_level(0, 1)  # procgen loads its assets once per process; forked workers inherit them
        print(f"procgen start-up (once per process): {time.perf_counter() - t:.1f} s")
        for workers in sorted({1, args.workers}):
            t = time.perf_counter()
            generate_coinrun(tmp / f"w{workers}", args.levels, args.steps, workers=workers, progress=False)
            print(f"coinrun generation, {workers} worker(s): {frames / (time.perf_counter() - t):,.0f} frames/s "
                  f"({args.levels} levels x {args.steps} steps, written to disk)")
        stored = tmp / "w1"
        t = time.perf_counter()
        generate_coinrun(tmp / "z", args.levels, args.steps, compress=True, progress=False)
        print(f"coinrun generation, compressed, 1 worker: {frames / (time.perf_counter() - t):,.0f} frames/s")
        print(f"bytes per frame, stored (uncompressed .npz): {_size(stored, '*.npz') / frames:,.0f}")
        print(f"bytes per frame, compressed .npz:            {_size(tmp / 'z', '*.npz') / frames:,.0f}")
        write_shards(stored, tmp / "shards", chunk_frames=250, max_samples_per_shard=4, progress=False)
        print(f"bytes per frame, tar shards:                 {_size(tmp / 'shards', '*.tar') / frames:,.0f}")

        # With 0 workers, batches are collated in this process by torch's intra-op threads,
        # which stall when other jobs hold the cores; so 0 workers is measured at both settings.
        threads = torch.get_num_threads()
        print(f"clip loading: {args.seq_len}-frame clips, batches of 16, {os.cpu_count()} CPU cores")
        for name, root in (("stored", stored), ("compressed", tmp / "z")):
            ds = EpisodeClipDataset(root, seq_len=args.seq_len, stride=1)  # every window: random access
            # A compressed episode is inflated whole for every clip: measure fewer.
            clips = args.clips if name == "stored" else max(50, args.clips // 20)
            _report(f"{name} episodes, random clips", ds, clips, True, threads)
        shards = ShardClipDataset(tmp / "shards", seq_len=args.seq_len, stride=4, rank=0, world_size=1)
        _report("tar shards, streamed", shards, args.clips, False, threads)


def _report(name: str, ds, clips: int, shuffle: bool, threads: int) -> None:
    for workers, n_threads in ((0, threads), (0, 1), (2, threads)):
        torch.set_num_threads(n_threads)
        rate = _clips_per_s(ds, workers, clips, shuffle)
        print(f"  {name}, {workers} workers (torch threads {n_threads}): {rate:,.0f} clips/s")
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
