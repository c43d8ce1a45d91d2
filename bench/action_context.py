"""What the latent action model's decoder may see decides what the codes mean, on CoinRun.

    python bench/action_context.py --data data/coinrun-explore --steps 600

Trains the small preset's action model alone (pairs encoder, codebook warm-up) on clips of the
train split, once with the decoder seeing x_1..t ("clip", Genie) and once x_t alone ("frame"),
then prints, over every transition of the val split, NMI of the codes with the horizontal key,
jump and the visible camera motion, each beside its shuffled chance value, and the mean real
camera motion of the transitions each code is given.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from opengenie import Genie, presets
from opengenie.data import EpisodeClipDataset, episode_paths
from opengenie.evaluation.transitions import action_diagnostics, pooled_transitions


def train(context: str, data: str, steps: int, warmup: int, seed: int, codes: int = 8, patch: int = 16,
          decoder_depth: int = 2, l2_codes: bool = True, frame_skip: int = 1) -> Genie:
    torch.manual_seed(seed)
    config = presets.small()
    config = replace(config, action=replace(config.action, encoder="pairs", codebook_warmup_steps=warmup,
                                            decoder_context=context, codebook_size=codes,
                                            patch_size=patch, decoder_depth=decoder_depth, l2_codes=l2_codes),
                     dynamics=replace(config.dynamics, num_actions=codes))
    world = Genie(config)
    model = world.action_model.train()
    ds = EpisodeClipDataset(data, seq_len=8, frame_skip=frame_skip, split="train", seed=seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=1e-4)
    step = 0
    while step < steps:
        for batch in loader:
            out = model(batch["video"])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step >= steps:
                break
    return world.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contexts", default="clip,frame")
    p.add_argument("--codes", type=int, default=8, help="latent actions (codebook size)")
    p.add_argument("--patch", type=int, default=16, help="the action model's patch size")
    p.add_argument("--decoder-depth", type=int, default=2)
    p.add_argument("--no-l2-codes", action="store_true", help="compare codes by distance, not cosine")
    p.add_argument("--frame-skip", type=int, default=1, help="video frames per transition")
    args = p.parse_args()
    torch.set_num_threads(1)
    val = episode_paths(args.data, "val")
    for context in args.contexts.split(","):
        started = time.perf_counter()
        world = train(context, args.data, args.steps, args.warmup, args.seed, args.codes, args.patch, args.decoder_depth,
                      not args.no_l2_codes, args.frame_skip)
        pooled = pooled_transitions(world, val, coinrun=True, progress=False, frame_skip=args.frame_skip)
        d = action_diagnostics(pooled, world.num_actions, 15)
        print(f"\n## decoder_context={context}, {args.codes} codes, warm-up {args.warmup}, patch {args.patch}, decoder depth {args.decoder_depth}, l2 codes {not args.no_l2_codes}, frame skip {args.frame_skip}: {args.steps} steps, {time.perf_counter() - started:.0f} s, "
              f"{d['transitions']} val transitions, perplexity {d['perplexity']:.2f}")
        for key in ("horizontal_key", "jump", "camera_dx", "camera_dy", "true_action"):
            x = d["nmi"][key]
            print(f"  NMI {key:<15} {x['nmi']:.3f}  (chance {x['chance']:.3f})")
        for r in d["latent_motion"]:
            if r["share"]:
                print(f"  code {r['action']}: {r['share']:6.1%} of transitions, camera dx {r['dx']:+.2f} dy {r['dy']:+.2f} px")


if __name__ == "__main__":
    main()
