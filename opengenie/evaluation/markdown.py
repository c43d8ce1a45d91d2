"""report.md from the metrics dict of `opengenie eval`: the verdict in words first, then every table
with its baseline beside it, then the figures. See docs/eval_report.md for how to read it."""

from __future__ import annotations

from opengenie.card import guidance_phrase

NAMES = {"reconstruction": "tokenizer reconstruction (ceiling)", "copy": "copy the prompt (baseline)",
         "inferred": "world, inferred actions", "random": "world, random actions"}


def _guidance(s: dict) -> str:
    """The action guidance of an evaluation's draws, as the report's first paragraph names it."""
    if not s.get("action_guidance"):
        return ""
    return ", " + guidance_phrase(s["action_guidance"], s.get("guidance_against", "mean"))  # older files: the mean


def _num(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):  # "inf" / "nan" as written to JSON
        return value
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ci(s: dict | None, digits: int = 2) -> str:
    """"mean [low, high]" of a summary {"mean", "ci95"}."""
    if s is None:
        return "skipped"
    low, high = s["ci95"]
    return f"{_num(s['mean'], digits)} [{_num(low, digits)}, {_num(high, digits)}]"


def _frames(ts: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] → "1–3, 5, 7–8"."""
    runs: list[list[int]] = []
    for t in ts:
        if runs and t == runs[-1][-1] + 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs) or "none"


def verdict_lines(m: dict) -> list[str]:
    """The findings a reader should not have to derive from the tables."""
    v, ctl, fvd, play = m["verdict"], m["controllability"], m["fvd"], m["playability"]
    n = v["generated_frames"]
    lines = []
    if len(v["inferred_beats_copy_at"]) == n:
        lines.append("- **The world beats copying the prompt** at every generated frame (PSNR with inferred "
                     "actions, 95 % interval of the difference above 0).")
    elif v["inferred_beats_copy_at"]:
        lines.append(f"- The world beats copying the prompt at frames {_frames(v['inferred_beats_copy_at'])} "
                     f"of 1..{n}" + (f"; it loses at {_frames(v['inferred_loses_to_copy_at'])}." if v["inferred_loses_to_copy_at"] else "."))
    else:
        worse = v["inferred_loses_to_copy_at"]
        lines.append("- **The world does not beat copying the prompt** at any frame (PSNR with inferred actions)"
                     + (f"; it is worse at frames {_frames(worse)}." if worse else "; it is no better or worse "
                        "within the 95 % intervals."))
    if v["random_loses_to_copy_at"]:
        lines.append(f"- Random actions do worse than standing still at frames {_frames(v['random_loses_to_copy_at'])}: "
                     "part of ΔtPSNR is random actions breaking the scene, not control.")
    if ctl["delta"] is not None:
        d, a, b = (ctl[k]["mean"] for k in ("delta", "inferred_minus_copy", "copy_minus_random"))
        lines.append(f"- ΔtPSNR at t = {ctl['t']}: {_num(d)} dB = {_num(a)} (inferred − copy) + {_num(b)} "
                     f"(copy − random).")
    if fvd is not None:
        better = "below" if fvd["inferred"] < fvd["copy"] else "not below"
        lines.append(f"- FVD of the world {_num(fvd['inferred'], 1)} is {better} copying the prompt "
                     f"({_num(fvd['copy'], 1)}) on the same {fvd['clips']} clips; real against real "
                     f"{_num(fvd['real_vs_real'], 1)} at {fvd['half_clips'][0]} vs {fvd['half_clips'][1]} clips "
                     f"(the world at those sizes: {_num(fvd['inferred_half'], 1)}).")
    nmi = m["actions"]["nmi"]
    for key in ("horizontal_key", "camera_dx"):
        if key in nmi:
            x = nmi[key]
            lines.append(f"- NMI(latent, {key.replace('_', ' ')}) {_num(x['nmi'], 3)} against chance "
                         f"{_num(x['chance'], 3)} over {x['transitions']} transitions.")
    acts = play["actions"]
    right, left = max(acts, key=lambda r: r["dx_total"]), min(acts, key=lambda r: r["dx_total"])
    up = min(acts, key=lambda r: r["dy_total"])
    real = {r["action"]: r for r in play["real"] or []}
    for name, row, key, axis in (("right", right, "RIGHT", "dx_total"), ("left", left, "LEFT", "dx_total"),
                                 ("up", up, "UP", "dy_total")):
        ref = f"; the real {key} key: {_num(real[key][axis], 1)} px" if key in real else ""
        lines.append(f"- Held {play['steps']} steps, the action moving the camera furthest {name} is "
                     f"a={row['action']} ({row['label']}): {_num(row[axis], 1)} px{ref}.")
    worst = max(acts, key=lambda r: r["broken"])
    lines.append(f"- Visibly broken frames (aligned PSNR < {_num(play['broken_below_db'], 1)} dB, the 1st "
                 f"percentile of real consecutive frames): at most {worst['broken']:.1%} (a={worst['action']}).")
    return lines


def _playability_rows(rows: list[dict], prefix: str) -> list[str]:
    out = []
    for r in rows:
        cons = "—" if r["consistency"] is None else f"{r['consistency']:.0%}"
        out.append(f"| {prefix}{r['action']} | {r['label']} | {_num(r['dx_per_step'])} | {_num(r['dy_per_step'])} | "
                   f"{_num(r['dx_total'], 1)} [{_num(r['dx_total_ci95'][0], 1)}, {_num(r['dx_total_ci95'][1], 1)}] | "
                   f"{_num(r['dy_total'], 1)} [{_num(r['dy_total_ci95'][0], 1)}, {_num(r['dy_total_ci95'][1], 1)}] | "
                   f"{cons} | {r['broken']:.1%} |")
    return out


def markdown(m: dict) -> str:
    """The report: verdict, tables with baselines and intervals, per-frame curves, figures."""
    s, ctl, dyn, act, play, f = (m[k] for k in ("settings", "controllability", "dynamics", "actions",
                                                 "playability", "figures"))
    lines = [
        "# World-model evaluation", "",
        f"Model `{s['model']}` on the `{s['split']}` split of `{s['data']}` ({s['episodes']} episodes): "
        f"{s['num_clips']} clips of {s['frames']} frames at {s['image_size'][0]}×{s['image_size'][1]}"
        + (f" (one world step = {s['frame_skip']} video frames)" if s.get("frame_skip", 1) > 1 else "") + ", seed "
        f"{s['seed']}, batch size {s['batch_size']}, MaskGIT {s['maskgit_steps']} steps at temperature "
        f"{s['temperature']}" + _guidance(s)
        + f", one prompt frame, device {s['device']} ({s['seconds']} s). "
        + _clip_rule(s) + "Intervals are bootstrap 95 % over clips.", "",
        "## Verdict", "", *verdict_lines(m), "",
        "## Frames against the real clip", "",
        "Generated frames 1..T−1 (the ceiling: every frame).", "",
        "| video | PSNR (dB) | SSIM | LPIPS |", "|---|---|---|---|",
    ]
    for key, name in NAMES.items():
        v = m["videos"][key]
        lines.append(f"| {name} | {_ci(v['psnr'])} | {_ci(v['ssim'], 3)} | {_ci(v['lpips'], 3)} |")
    fvd = m["fvd"]
    lines += ["", "## FVD", ""]
    if fvd is None:
        lines.append("Skipped (`--skip fvd`).")
    else:
        lines += [f"I3D logits, {fvd['frames']}-frame clips, {s['fvd_resize']}; lower is better. FVD is biased "
                  "upwards at small sample sizes: compare only rows with the same clip counts.", "",
                  "| videos | clips | FVD |", "|---|---|---|",
                  f"| world (inferred actions) vs real | {fvd['clips']} vs {fvd['clips']} | {_num(fvd['inferred'], 1)} |",
                  f"| copy the prompt vs real | {fvd['clips']} vs {fvd['clips']} | {_num(fvd['copy'], 1)} |",
                  f"| real vs real, disjoint halves (floor) | {fvd['half_clips'][0]} vs {fvd['half_clips'][1]} | "
                  f"{_num(fvd['real_vs_real'], 1)} |",
                  f"| world vs real, the same halves | {fvd['half_clips'][1]} vs {fvd['half_clips'][0]} | "
                  f"{_num(fvd['inferred_half'], 1)} |",
                  f"| copy vs real, the same halves | {fvd['half_clips'][1]} vs {fvd['half_clips'][0]} | "
                  f"{_num(fvd['copy_half'], 1)} |"]
    lines += ["", "## Controllability", "",
              "ΔtPSNR (Genie §3) = PSNR(inferred actions) − PSNR(random actions), split into what the "
              "actions add over standing still (inferred − copy) and what random actions take away "
              f"(copy − random). dB, per generated frame; t = {ctl['t']} is the paper's.", "",
              "| t | ΔtPSNR | inferred − copy | copy − random | PSNR ceiling | copy | inferred | random |",
              "|---|---|---|---|---|---|---|---|"]
    per, vid = ctl["per_frame"], m["videos"]
    for i in range(len(per["delta"]["mean"])):
        t = i + 1
        mark = "**" if t == ctl["t"] else ""
        cells = [f"{mark}{_num(per[k]['mean'][i])} [{_num(per[k]['ci95'][0][i])}, {_num(per[k]['ci95'][1][i])}]{mark}"
                 for k in ("delta", "inferred_minus_copy", "copy_minus_random")]
        psnrs = [_num(vid[k]["psnr_per_frame"]["mean"][t]) for k in ("reconstruction", "copy", "inferred", "random")]
        lines.append(f"| {mark}{t}{mark} | " + " | ".join(cells + psnrs) + " |")
    lines += ["", f"![PSNR per frame]({f['psnr']})", "",
              "## What the latent actions mean", "",
              f"Over all {act['transitions']} transitions of the split (level restarts left out): "
              f"{act['usage'] * act['num_actions']:.0f} of {act['num_actions']} latent actions in use, perplexity "
              f"{_num(act['perplexity'])}. Chance: NMI with the labels shuffled (20 times), same sample size.", "",
              "| labels | NMI | chance (± sd) | NMI − chance |", "|---|---|---|---|"]
    for key, x in act["nmi"].items():
        lines.append(f"| {key.replace('_', ' ')} | {_num(x['nmi'], 4)} | {_num(x['chance'], 4)} ± "
                     f"{_num(x['chance_std'], 4)} | {_num(x['excess'], 4)} |")
    lines += ["", "Real camera motion (px per step) of the transitions the action model gives each latent action:", "",
              "| latent action | share | dx | dy |", "|---|---|---|---|"]
    lines += [f"| {r['action']} | {r['share']:.1%} | {_num(r['dx'])} | {_num(r['dy'])} |" for r in act["latent_motion"]]
    lines += ["", "## Playability", "",
              f"Each latent action held for {play['steps']} steps from {play['prompts']} held-out prompt frames; "
              "camera motion estimated from the frames (dx > 0 right, dy < 0 up; px). Consistency: share of "
              "prompts whose displacement points the way the mean does. Broken: share of generated frames whose "
              f"shift-aligned PSNR to the frame before is under {_num(play['broken_below_db'], 1)} dB (the 1st "
              "percentile of real consecutive frames)."
              + ((" Rows `real …`: the real game from the same states, each key held as long" + _ended(play))
                 if play["real"] else ""),
              "", "| action | label | dx / step | dy / step | dx total [95 %] | dy total [95 %] | consistency | broken |",
              "|---|---|---|---|---|---|---|---|"]
    lines += _playability_rows(play["actions"], "a=")
    if play["real"]:
        lines += _playability_rows(play["real"], "real ")
    lines += ["", f"![camera motion per action]({f['motion']})", "",
              f"![action grid]({f['action_grid']})", "",
              "## Dynamics, teacher-forced", "",
              f"On the real clips' tokens and inferred actions, windows of {dyn['window']} frames.", "",
              "| metric | value |", "|---|---|",
              f"| masked-token CE (nats), training masks | {_ci(dyn['masked_ce'], 3)} |",
              f"| masked-token accuracy | {_ci(dyn['masked_accuracy'], 3)} |",
              f"| next-frame CE (nats), last frame fully masked | {_ci(dyn['next_frame_ce'], 3)} |",
              f"| next-frame accuracy | {_ci(dyn['next_frame_accuracy'], 3)} |",
              "", "## Reconstructions", "", "Real clips (top) over the tokenizer's reconstructions.", "",
              f"![reconstructions]({f['reconstruction']})", "",
              "## Rollouts", "",
              "From the first real frame: the real clip, the rollout with the actions inferred from it, and "
              "the rollout with random actions (same MaskGIT seed). Captions name the latent action that led "
              "into each frame.", "", f"![rollouts]({f['rollout']})", ""]
    return "\n".join(lines)


def _clip_rule(s: dict) -> str:
    """Whether a clip may cross an episode's end (older metrics.json files, which do not say, did)."""
    if s.get("clips_across_episode_ends", True):
        return "Clips are cut across episode ends (a coin or a death restarts the level mid-clip). "
    return "Every clip lies within one episode: none crosses a coin or a death that restarts the level. "


def _ended(play: dict) -> str:
    """How often a held real key ended the episode (a coin or a death; the camera stops there)."""
    ended = play.get("real_episode_ended")
    if not ended or not any(ended.values()):
        return "."
    counts = ", ".join(f"{key} {n}" for key, n in ended.items() if n)
    return (f"; holding it ended the episode (a coin or a death) from some states ({counts} of {play['prompts']}), "
            "and from there the camera stops.")
