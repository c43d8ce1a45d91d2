"""The `opengenie` sub-commands that use a trained world: gallery, eval, generate, play, agent."""

from __future__ import annotations

import argparse
import sys

from opengenie.cli_args import (MAX_ROLLOUT, NONNEGATIVE, POSITIVE, SEED, STEPS, TEMPERATURE, THREADS, action_ids,
                                add_guidance, bounded, guidance_of, has_episodes, key_presses, origin)


def _gallery(args) -> None:
    from opengenie.evaluation.gallery import against_the_game, write_gallery

    if args.data is None and args.model is None:
        raise ValueError("give --data (write the gallery) or --model (hold a world against it), or both")
    if args.data is not None:
        has_episodes(args.data)
        reference = write_gallery(args.data, args.out, args.count, args.hold_steps, args.frame_skip, args.every,
                                  args.min_px)
        print(f"wrote {len(reference['prompts'])} starting frames and real.json to {args.out}")
    if args.model is not None:
        from opengenie import Genie

        world = Genie.from_pretrained(args.model).set_sampling(**guidance_of(args))
        rows = against_the_game(world, args.out, draws=args.draws, progress=True)
        print(f"each arrow held from the frames in {args.out} as long as the real game's key was, beside the game "
              "from the same states (camera motion along the arrow, px):")
        for arrow, r in rows.items():
            low, high = r["world_ci95"]
            share = f"{r['world'] / r['real']:.0%} of the real game" if r["real"] else "the real key does not move"
            print(f"  {arrow:<11} action {r['action']}: world {r['world']:+6.1f} [{low:+.1f}, {high:+.1f}]  "
                  f"real {r['real']:+6.1f}  ({share}; {r['rollouts']} rollouts)")


def _add_gallery(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help="a world's starting frames, chosen where the real game's arrows all move; "
                                       "or a world held against the game from them")
    p.add_argument("--out", required=True, help="folder of the starting frames (a world's prompts/) and real.json")
    p.add_argument("--data", help="held-out CoinRun episodes to choose states from (writes --out)")
    p.add_argument("--model", help="a saved world: hold its arrow keys' actions from --out, beside the real game")
    p.add_argument("--count", type=POSITIVE, default=6, help="starting frames, one per level (with --data)")
    p.add_argument("--frame-skip", type=POSITIVE, default=4, help="game frames per world step (with --data)")
    p.add_argument("--hold-steps", type=POSITIVE, default=12,
                   help="world steps each key is held (with --data)")
    p.add_argument("--every", type=POSITIVE, default=40,
                   help="candidate states: every N-th frame of an episode (with --data)")
    p.add_argument("--min-px", type=float, default=6.0,
                   help="how far RIGHT, LEFT and UP must each move the camera beyond no key (with --data)")
    p.add_argument("--draws", type=POSITIVE, default=3, help="rollouts per starting frame with --model")
    add_guidance(p, "with --model: the world's action guidance weight (default: its own)")
    p.set_defaults(func=_gallery)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a saved world on held-out episodes: metrics.json, report.md, figures")
    p.add_argument("--model", required=True, help="folder of a saved world (config.json + model.safetensors)")
    p.add_argument("--data", required=True, help="episode folder (from `opengenie data coinrun|videos`)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="manifest split to evaluate on (all: every episode)")
    p.add_argument("--num-clips", type=POSITIVE, default=256, help="clips to evaluate (drawn with --seed)")
    p.add_argument("--frames", type=bounded(int, 2, 4096), default=16,
                   help="frames per clip (FVD needs >= 9; 16 by convention)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of clip choice, MaskGIT draws and random actions")
    p.add_argument("--batch-size", type=POSITIVE, default=16, help="clips (and held-action rollouts) per batch")
    p.add_argument("--prompts", type=POSITIVE, default=16, help="held-out prompt frames of the playability report")
    p.add_argument("--hold-steps", type=bounded(int, 1, 1000), default=12,
                   help="steps each action is held in the playability report")
    p.add_argument("--fvd-precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="I3D under bf16 autocast (2x faster where bf16 is native, FVD within 0.4%%) or in fp32; "
                        "auto: bf16 on a GPU or a CPU with AVX-512 BF16 / AMX, else fp32")
    p.add_argument("--maskgit-steps", type=STEPS, default=None,
                   help="MaskGIT iterations per generated frame (default: the world's own)")
    add_guidance(p)
    p.add_argument("--across-episode-ends", action="store_true",
                   help="let clips run across an episode's end (a coin or death restarts the level); "
                        "by default each clip stays within one episode")
    p.add_argument("--out", default="out/eval", help="output folder of metrics.json, report.md and PNGs")
    p.add_argument("--skip", default="", help="comma-separated metrics to leave out: fvd, lpips")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=THREADS, default=None,
                   help="CPU threads of torch (default: torch's choice; 1 is fastest on a busy machine)")

    def run(args: argparse.Namespace) -> None:
        import torch

        from opengenie.evaluation.report import run_eval

        if args.threads:
            torch.set_num_threads(args.threads)
        skip = tuple(s.strip() for s in args.skip.split(",") if s.strip())
        run_eval(args.model, args.data, split=None if args.split == "all" else args.split,
                 num_clips=args.num_clips, frames=args.frames, seed=args.seed, batch_size=args.batch_size,
                 out=args.out, skip=skip, device=args.device, prompts=args.prompts, hold_steps=args.hold_steps,
                 fvd_precision=args.fvd_precision, maskgit_steps=args.maskgit_steps,
                 **guidance_of(args), across_episode_ends=args.across_episode_ends)
        print(f"wrote {args.out}/metrics.json, per_clip.json and report.md")

    p.set_defaults(func=run)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate",
                       help="play a world from a prompt image: a GIF/MP4 rollout, or the --grid of every action")
    p.add_argument("--model", required=True, help="a saved world (folder with config.json + model.safetensors)")
    p.add_argument("--prompt", nargs="+", required=True, help="prompt image(s), any size (resized); several = context")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--actions", type=action_ids, default=None, help="comma-separated latent action ids, e.g. 0,3,3,1")
    how.add_argument("--keys", type=key_presses, default=None,
                     help="arrow keys, e.g. right*8,up,left*4, played as the world's labelled actions")
    how.add_argument("--random", type=bounded(int, 1, MAX_ROLLOUT), default=None, metavar="N",
                     help="N random actions (default: 16)")
    how.add_argument("--grid", action="store_true", help="every action from the same prompt, one row each (PNG)")
    p.add_argument("--frames-per-action", type=bounded(int, 1, 1000), default=6,
                   help="with --grid: frames each action is held")
    p.add_argument("--out", required=True, help="rollout.gif | rollout.mp4 | grid.png (with --grid)")
    p.add_argument("--maskgit-steps", "--steps", dest="maskgit_steps", type=STEPS, default=None,
                   help="MaskGIT iterations per frame (default: the model's)")
    p.add_argument("--temperature", type=TEMPERATURE, default=None,
                   help="sampling temperature, 0 = most likely tokens (default: the model's)")
    add_guidance(p)
    p.add_argument("--seed", type=SEED, default=0, help="seed of the sampler and of --random")
    p.add_argument("--fps", type=bounded(float, 0.1, 240), default=8, help="frames per second of the GIF/MP4")
    p.add_argument("--scale", type=bounded(int, 1, 64), default=None,
                   help="nearest-neighbour upscaling (default 4; 2 for --grid)")
    p.add_argument("--caption", action="store_true",
                   help="write each frame's action and its label under the frame (GIF/MP4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--bf16", action="store_true",
                   help="run the world under bfloat16 autocast (about 2x faster for CoinRun-size worlds)")

    def run(args: argparse.Namespace) -> None:
        from pathlib import Path

        import torch

        from opengenie.genie import Genie

        out = Path(args.out)
        if args.grid != (out.suffix.lower() == ".png") or out.suffix.lower() not in (".png", ".gif", ".mp4"):
            raise ValueError(f"--out {out}: write the --grid as .png and rollouts as .gif or .mp4")
        world = Genie.from_pretrained(args.model, device=args.device).set_sampling(**guidance_of(args))
        prompt = args.prompt if len(args.prompt) > 1 else args.prompt[0]
        with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.bf16):
            _generate(args, world, prompt, out)

    def _generate(args: argparse.Namespace, world, prompt, out) -> None:
        import numpy as np

        from opengenie.play.render import action_grid, caption_frames, upscale, write_video

        if args.grid:
            out.parent.mkdir(parents=True, exist_ok=True)
            action_grid(world, prompt, args.frames_per_action, args.maskgit_steps, args.temperature, args.seed,
                        scale=args.scale or 2).save(out)
            print(f"wrote {out}: {world.num_actions} actions x {args.frames_per_action} frames")
            return
        if args.keys is not None:
            unmapped = sorted({k for k in args.keys if k not in world.config.arrow_keys})
            if unmapped:
                raise ValueError(f"--keys: this world maps no action to {', '.join(unmapped)} "
                                 f"(its arrow keys: {world.config.arrow_keys or 'none, unlabelled'}); "
                                 f"use --actions with latent action ids")
            actions = [world.config.arrow_keys[k] for k in args.keys]
        elif args.actions is not None:
            actions = args.actions
            bad = [a for a in actions if not 0 <= a < world.num_actions]
            if bad:
                raise ValueError(f"--actions: this world's actions are 0..{world.num_actions - 1}, got {bad[0]}")
        else:
            n = 16 if args.random is None else args.random
            actions = np.random.default_rng(args.seed).integers(world.num_actions, size=n).tolist()
        frames = play_frames(world, prompt, actions, args.maskgit_steps, args.temperature, args.seed)
        scale = args.scale or 4
        if args.caption:
            labels = world.config.action_labels or [f"action {a}" for a in range(world.num_actions)]
            prompt_frames = len(frames) - len(actions)
            captions = ["prompt"] * prompt_frames + [f"{a}: {labels[a]}" for a in actions]
            frames, scale = caption_frames(upscale(frames, scale), captions), 1
        write_video(frames, out, fps=args.fps, scale=scale)
        print(f"wrote {out}: {len(frames)} frames (actions {','.join(map(str, actions))})")

    p.set_defaults(func=run)


def play_frames(world, prompt, actions: list[int], maskgit_steps, temperature, seed):
    """Play `actions` from `prompt` → frames (T0 + n, H, W, 3) uint8, with a progress bar on
    stderr for long rollouts (as `opengenie.play.render.rollout_frames`, frame by frame)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from opengenie.images import load_frames, to_frames, to_video

    state, recon = world.start(to_video(load_frames(prompt, world.image_size)), seed, maskgit_steps=maskgit_steps,
                               temperature=temperature)
    frames = [to_frames(recon[0])]
    for a in tqdm(actions, desc="frames", unit="frame", disable=len(actions) < 32, file=sys.stderr):
        frames.append(to_frames(state.step(torch.tensor([a]))[0]))
    return np.concatenate(frames)


def _add_play(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("play", help="play a world in the browser: a local web page, keys 1..N take latent actions")
    p.add_argument("--model", required=True, help="a saved world (folder with config.json + model.safetensors)")
    p.add_argument("--port", type=bounded(int, 1, 65535), default=8000)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 lets other machines play (no authentication)")
    p.add_argument("--data", default=None, help="episode folder (opengenie data coinrun) to offer starting frames")
    p.add_argument("--prompt", default=None, help="image every session starts from (default: first --data frame)")
    p.add_argument("--maskgit-steps", "--steps", dest="maskgit_steps", type=STEPS, default=None,
                   help="MaskGIT iterations per frame (default: the model's)")
    p.add_argument("--temperature", type=TEMPERATURE, default=None,
                   help="sampling temperature, 0 = most likely tokens (default: the model's)")
    add_guidance(p)
    p.add_argument("--max-sessions", type=bounded(int, 1, 1024), default=16, help="tabs playing at once")
    p.add_argument("--idle-timeout", type=bounded(float, 1, 10**7), default=600,
                   help="seconds before an idle tab's session is freed")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=THREADS, default=None, help="torch CPU threads (fewer can be faster on a busy CPU)")
    p.add_argument("--bf16", action="store_true",
                   help="run the world under bfloat16 autocast (about 2x faster for CoinRun-size worlds)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="compile the play step with torch.compile in the background while the page already "
                        "plays (about 20-60 s of one core; about 2x the frames/s afterwards)")
    p.add_argument("--allow-origin", type=origin, action="append", default=[], metavar="ORIGIN",
                   help="a web origin (https://example.org) besides the page's own whose pages may play; repeatable")

    def run(args: argparse.Namespace) -> None:
        from opengenie.play.server import serve

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)

        serve(args.model, host=args.host, port=args.port, device=args.device, data=args.data,
              prompt=args.prompt, maskgit_steps=args.maskgit_steps, temperature=args.temperature,
              **guidance_of(args), max_sessions=args.max_sessions, idle_timeout=args.idle_timeout, bf16=args.bf16,
              allowed_origins=tuple(args.allow_origin), compiled=args.compile)

    p.set_defaults(func=run)


def _add_agent(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="agents from latent actions (Genie App. E): success rates beside their baselines")
    verbs = p.add_subparsers(dest="agent_command", required=True)
    s = verbs.add_parser("square", help="the square world end to end: latent policy per N labels, oracle, random")
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--labels", type=NONNEGATIVE, nargs="+", default=[0, 10, 50, 200],
                   help="numbers N of labelled transitions the latent-to-real dictionary is built from")
    s.add_argument("--episodes", type=POSITIVE, default=500, help="held-out episodes per agent")
    e = verbs.add_parser("expert", help="the CoinRun expert's success rate on held-out levels, beside a random agent")
    e.add_argument("--levels", type=POSITIVE, default=200)
    e.add_argument("--start-level", type=NONNEGATIVE, default=100_000, help="first level seed")
    e.add_argument("--difficulty", default="easy", choices=["easy", "hard"])
    c = verbs.add_parser("coinrun", help="one seed of the CoinRun comparison: a world's action model labels "
                                         "expert play; latent policy per N labels, oracle, random")
    c.add_argument("--model", default="worlds/coinrun-small", help="the world whose action model labels")
    c.add_argument("--seed", type=SEED, default=0)
    c.add_argument("--labels", type=NONNEGATIVE, nargs="+", default=[0, 50, 200, 1000],
                   help="numbers N of labelled transitions the latent-to-real dictionary is built from")
    c.add_argument("--levels", type=POSITIVE, default=200, help="held-out levels every agent plays")
    c.add_argument("--start-level", type=NONNEGATIVE, default=100_000, help="first held-out level seed")
    c.add_argument("--train-levels", type=POSITIVE, default=100, help="levels of expert play to clone from")
    c.add_argument("--label-levels", type=POSITIVE, default=40,
                   help="levels of expert play (from seed 1000) the N labelled transitions are drawn from")
    c.add_argument("--policy-steps", type=POSITIVE, default=600, help="cloning steps of each policy")
    c.add_argument("--difficulty", default="easy", choices=["easy", "hard"])
    for verb in (s, e, c):
        verb.add_argument("--out", default=None, help="also write the results to this JSON file")
        verb.add_argument("--threads", type=THREADS, default=1, help="torch CPU threads")

    def run(args: argparse.Namespace) -> None:
        import json

        import torch

        torch.set_num_threads(args.threads)
        if args.agent_command == "square":
            from opengenie.agents.evaluate import run_square

            result = run_square(labels=tuple(args.labels), eval_episodes=args.episodes, seed=args.seed)
            rows = [(f"latent, N={n}", r) for n, r in result["latent"].items()]
            rows += [(name, result[name]) for name in ("oracle", "random", "expert")]
        elif args.agent_command == "coinrun":
            from opengenie import Genie
            from opengenie.agents.coinrun import run_coinrun

            world = Genie.from_pretrained(args.model).eval()
            result = run_coinrun(world, train_levels=range(args.train_levels), label_levels=range(1000, 1000 + args.label_levels),
                                 eval_levels=range(args.start_level, args.start_level + args.levels),
                                 labels=tuple(args.labels), difficulty=args.difficulty,
                                 policy_steps=args.policy_steps, seed=args.seed)
            rows = [(f"latent, N={n}", r) for n, r in result["latent"].items()]
            rows += [(name, result[name]) for name in ("oracle", "random")]
        else:
            import numpy as np

            from opengenie.agents.evaluate import coinrun_episode, rate
            from opengenie.data.expert import LookaheadExpert

            rng = np.random.default_rng(0)
            agents = {"expert": lambda env: LookaheadExpert(env).act,
                      "random": lambda env: (lambda frame: int(rng.integers(15)))}
            levels = range(args.start_level, args.start_level + args.levels)
            result = {name: rate([coinrun_episode(agent, level, args.difficulty)["success"] for level in levels])
                      for name, agent in agents.items()}
            rows = list(result.items())
        for name, r in rows:
            print(f"{name:14s} success {r['rate']:.3f}  95% [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]  n={r['n']}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)

    p.set_defaults(func=run)


# In the order `opengenie --help` lists them, after cli.py's own.
SECTIONS = [_add_gallery, _add_eval, _add_generate, _add_play, _add_agent]
