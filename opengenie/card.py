"""World cards: the README.md of a saved world, written from its config.json (and, where
known, the run that trained it and an evaluation of it), so the card cannot drift from the world.

    from opengenie.card import write_card
    write_card("worlds/tiny")                                    # config.json → README.md
    write_card("worlds/tiny", metrics="out/eval/metrics.json",   # + the eval table with baselines
               provenance={"data": ..., "training": ..., "machine": ...})

`opengenie export` writes one. Sections, as in the bundled worlds' cards: a summary table (model,
data, training, frame step), what its actions do, the evaluation beside its baselines, limitations.
Nothing here imports torch: a card is text over JSON files and a safetensors header.
"""

from __future__ import annotations

import json
import struct
from math import prod
from pathlib import Path

from opengenie.digest import sha256_file

GENERATED = "<!-- written by `opengenie export` (opengenie.card) from config.json: edits are overwritten -->"
CARD_FILE = "README.md"
ARROW_NAMES = {"ArrowLeft": "←", "ArrowRight": "→", "ArrowUp": "↑", "ArrowDown": "↓", " ": "Space"}
VIDEOS = [("inferred", "world, inferred actions"), ("random", "world, random actions"),
          ("copy", "copy the prompt"), ("reconstruction", "tokenizer")]


def weights_summary(world: str | Path) -> tuple[int, str]:
    """(parameter count, storage dtype) of `model.safetensors`, read from its header alone."""
    with open(Path(world) / "model.safetensors", "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))  # safetensors: u64 header length, then JSON
        header = json.loads(f.read(size))
    tensors = [t for name, t in header.items() if name != "__metadata__"]
    floats = {t["dtype"] for t in tensors if t["dtype"].startswith(("F", "BF"))}
    names = {"F32": "fp32", "F16": "fp16", "BF16": "bf16"}
    return sum(prod(t["shape"]) for t in tensors), "/".join(sorted(names.get(d, d.lower()) for d in floats))


def model_line(config: dict, parameters: int | None = None, dtype: str | None = None) -> str:
    """One sentence of the three models' sizes from a world's config.json."""
    t, a, d = config["tokenizer"], config["action"], config["dynamics"]
    tok = (f"{t['kind']} tokenizer {t['depth']}+{t['decoder_depth']} × {t['dim']}, patch {t['patch_size']}, "
           f"{t['codebook_size']} codes")
    if t.get("pixel_head_channels"):
        tok += f", pixel head {t.get('pixel_head_blocks', 2)} × {t['pixel_head_channels']}"
    act = (f"latent action model {a['depth']}+{a['decoder_depth']} × {a['dim']}, {d['num_actions']} actions, "
           f"{a.get('encoder', 'pairs')} encoder, decoder context {a.get('decoder_context', 'clip')}")
    conditioning = "one action token per frame" if d.get("action_conditioning") == "token" else "additive actions"
    dyn = f"dynamics {d['depth']} × {d['dim']}, {conditioning}, {d['maskgit_steps']} MaskGIT steps"
    if d.get("action_guidance"):
        dyn += ", " + guidance_phrase(d["action_guidance"], guidance_name(d.get("guidance_against"), d["num_actions"]))
    size = f"; {parameters / 1e6:.1f}M parameters, {dtype}" if parameters else ""
    return f"{tok}; {act}; {dyn}{size}"


def data_line(manifest: dict, folder: str | None = None) -> str:
    """What an episode folder holds, from its manifest.json (`opengenie data ...`)."""
    s, counts = manifest.get("settings", {}), manifest.get("counts", {})
    policy = s.get("policy")
    policy = policy.get("policy") if isinstance(policy, dict) else policy
    parts = [manifest.get("source", "episodes")]
    if s.get("difficulty"):
        parts.append(s["difficulty"])
    if "episodes" in counts or "frames" in counts:
        parts.append(", ".join(f"{counts[k]:,} {k}" for k in ("episodes", "frames") if k in counts))
    if s.get("steps_per_level"):
        parts.append(f"{s['steps_per_level']} frames per level")
    if policy:
        parts.append(f"{policy} policy")
    return ", ".join(parts) + (f" (`{folder}`)" if folder else "")


KEPT_METRICS = ("metrics.json", "eval/metrics.json")  # where a world keeps its evaluation, first found first


def find_metrics(world: str | Path) -> Path | None:
    """An evaluation kept with the world (`metrics.json` or `eval/metrics.json` in its folder) of
    the weights saved there now, or None."""
    return _kept_evaluation(Path(world))[0]


def _kept_evaluation(world: Path) -> tuple[Path | None, Path | None]:
    """(the first kept evaluation of these weights, else None; the first kept one of other weights)."""
    digest = weights_digest(world)  # once: each kept file is held against it
    kept = [world / name for name in KEPT_METRICS if (world / name).is_file()]
    ours = [path for path in kept if _measures(json.loads(path.read_text()), digest)]
    return (ours[0] if ours else None), next((path for path in kept if path not in ours), None)


def weights_digest(world: str | Path) -> str | None:
    """sha256 of a world's model.safetensors (None without one): `opengenie eval` records it
    (`settings.weights_sha256`) so that an evaluation is told apart from weights exported over it."""
    path = Path(world) / "model.safetensors"
    return sha256_file(path) if path.is_file() else None


def measures_these_weights(world: str | Path, metrics: dict) -> bool:
    """Whether `metrics` (an `opengenie eval` metrics.json) measured the weights saved in `world`
    now. One that records no digest (written before it was recorded; `mark_kept_evaluations`
    stamps those before an export replaces the weights), or a folder without weights, cannot tell."""
    return _measures(metrics, weights_digest(world))


def _measures(metrics: dict, digest: str | None) -> bool:
    recorded = metrics.get("settings", {}).get("weights_sha256")
    return recorded is None or digest is None or recorded == digest


def mark_kept_evaluations(world: str | Path) -> list[Path]:
    """Before new weights are written over `world`: stamp every evaluation kept there that records
    no digest with the digest of the weights it was kept with, so that cards written afterwards
    leave it out. Returns the files stamped."""
    world = Path(world)
    digest = weights_digest(world)
    if digest is None:  # no weights yet: nothing is replaced
        return []
    stamped = []
    for path in (world / name for name in KEPT_METRICS if (world / name).is_file()):
        metrics = json.loads(path.read_text())
        if "weights_sha256" not in metrics.setdefault("settings", {}):
            metrics["settings"]["weights_sha256"] = digest
            path.write_text(json.dumps(metrics, indent=2) + "\n")
            stamped.append(path)
    return stamped


def _num(value, digits: int = 1) -> str:
    return "—" if value is None else value if isinstance(value, str) else f"{value:.{digits}f}".replace("-", "−")


def _ci(summary: dict | None, digits: int = 2) -> str:
    if summary is None:
        return "skipped"
    low, high = summary["ci95"]
    return f"{_num(summary['mean'], digits)} [{_num(low, digits)}, {_num(high, digits)}]"


def _actions(config: dict, metrics: dict | None, measured: dict | None) -> list[str]:
    labels, keys = config.get("action_labels") or [], config.get("arrow_keys") or {}
    n = config["dynamics"]["num_actions"]
    arrows = {a: ", ".join(ARROW_NAMES[k] for k, v in keys.items() if v == a) for a in range(n)}
    play = (metrics or {}).get("playability")
    if measured and not play:
        lines = [f"Measured with `opengenie label` (each action held {measured['steps']} steps from "
                 f"{measured['prompts']} held-out frames; camera motion in px, dx > 0 right, dy < 0 up) and "
                 "stored in `config.json`:", "", "| action | label | key | dx | dy |", "|---|---|---|---|---|"]
        lines += [f"| {r['action']} | {label} | {arrows[r['action']]} | {_num(r['dx_total'])} | {_num(r['dy_total'])} |"
                  for r, label in zip(measured["actions"], measured["action_labels"])]
    elif play:
        # The stored labels were measured from other prompts (`opengenie label`) than these rows: the
        # last column names the motion of these rows, so a label that reads oddly beside them shows why.
        lines = [f"Held {play['steps']} steps from {play['prompts']} held-out frames (`opengenie eval`; camera "
                 "motion in px, dx > 0 right, dy < 0 up; broken: frames under the real frames' 1st percentile "
                 "of shift-aligned PSNR)" + ("; label: stored in `config.json` by `opengenie label` from its own "
                                             "prompts; these rows read: the label these rows alone give" if labels
                                             else "") + ":", "",
                 "| action | label | key | dx | dy | broken |" + (" these rows read |" if labels else ""),
                 "|---|---|---|---|---|---|" + ("---|" if labels else "")]
        lines += [f"| {r['action']} | {labels[r['action']] if labels else r['label']} | {arrows[r['action']]} | "
                  f"{_num(r['dx_total'])} | {_num(r['dy_total'])} | {r['broken']:.1%} |"
                  + (f" {r['label']} |" if labels else "") for r in play["actions"]]
        lines += [f"| real {r['action']} | the game's key | | {_num(r['dx_total'])} | {_num(r['dy_total'])} | "
                  f"{r['broken']:.1%} |" + (" |" if labels else "") for r in play.get("real") or []]
    elif labels:
        lines = ["Measured with `opengenie label` (each action held from held-out frames) and stored in "
                 "`config.json`:", "", "| action | label | key |", "|---|---|---|"]
        lines += [f"| {a} | {labels[a]} | {arrows[a]} |" for a in range(n)]
    else:
        lines = [f"Not measured yet: the {n} latent actions have no names. `opengenie label --model DIR --data "
                 "EPISODES` names them by the camera motion they cause and maps the arrow keys."]
    if keys:
        unmapped = [ARROW_NAMES[k] for k in ("ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown") if k not in keys]
        lines += ["", "Arrow keys: " + ", ".join(f"{ARROW_NAMES[k]} action {v}" for k, v in keys.items())
                  + (f"; {' and '.join(unmapped)} unmapped." if unmapped else ".")]
    return lines


def guidance_name(against: int | None, num_actions: int) -> str | int:
    """`DynamicsConfig.guidance_against` as `--guidance-against` takes it: "mean", "none" or an id."""
    return "mean" if against is None else "none" if against == num_actions else against


def guidance_phrase(weight: float, against: str | int, labels=()) -> str:
    """"action guidance W against ..." for the card, the evaluation report and the play page;
    `against` as `guidance_name` gives it, `labels` the world's action labels (an action is named by them)."""
    if against == "mean":
        return f"action guidance {weight:g} against the mean over its actions"
    if against == "none":
        return f"action guidance {weight:g} against no action"
    label = labels[against] if isinstance(against, int) and 0 <= against < len(labels) else None
    return f"action guidance {weight:g} against action {against}" + (f" ({label})" if label else "")


def _evaluation(m: dict, config: dict) -> list[str]:
    s, videos, fvd, ctl = m["settings"], m["videos"], m.get("fvd"), m["controllability"]
    flags = " --across-episode-ends" if s.get("clips_across_episode_ends", True) else ""  # older files: across
    steps = s.get("maskgit_steps")
    if steps is not None and steps != config["dynamics"]["maskgit_steps"]:  # not the world's own sampling
        flags += f" --maskgit-steps {steps}"
    guidance = s.get("action_guidance", 0.0)  # older files: plain draws
    if guidance != config["dynamics"].get("action_guidance", 0.0):
        flags += f" --action-guidance {guidance:g}"
    against = s.get("guidance_against", "mean")  # older files: the mean
    own = config["dynamics"]
    if guidance and against != guidance_name(own.get("guidance_against"), own["num_actions"]):
        flags += f" --guidance-against {against}"
    lines = [f"`opengenie eval --data {s['data']} --split {s['split']}{flags}` ({s['num_clips']} clips of {s['frames']} "
             "frames; bootstrap 95 % intervals):", "",
             "| | " + " | ".join(name for _, name in VIDEOS) + " |", "|---|" + "---|" * len(VIDEOS),
             f"| PSNR frames 1–{s['frames'] - 1} (dB) | " + " | ".join(_ci(videos[k]["psnr"]) for k, _ in VIDEOS) + " |"]
    if fvd is not None:
        lines.append(f"| FVD ({fvd['clips']} clips) | {_num(fvd['inferred'])} | | {_num(fvd['copy'])} | real vs real "
                     f"({fvd['half_clips'][0]} vs {fvd['half_clips'][1]}): {_num(fvd['real_vs_real'])} |")
    lines.append("")
    if ctl.get("delta") is not None:
        d, a, b = (ctl[k]["mean"] for k in ("delta", "inferred_minus_copy", "copy_minus_random"))
        lines.append(f"ΔtPSNR@{ctl['t']} {_num(d, 2)} dB = {_num(a, 2)} (inferred − copy) + {_num(b, 2)} "
                     "(copy − random).")
    nmi = m.get("actions", {}).get("nmi", {})
    named = [f"{k.replace('_', ' ')} {_num(x['nmi'], 3)} (chance {_num(x['chance'], 4)})" for k, x in nmi.items()]
    if named:
        lines.append("NMI of the latent actions with " + ", ".join(named) + ".")
    return lines


def _limitations(config: dict, m: dict | None) -> list[str]:
    """What the card can state from the numbers; anything else belongs in the notes."""
    labels = config.get("action_labels") or []
    h, w = config["tokenizer"]["image_size"]
    out = []
    if labels and not any("right" in x for x in labels):
        out.append("No latent action walks right" + ("" if any("left" in x for x in labels) else " or left") + ".")
    elif labels and not any("left" in x for x in labels):
        out.append("No latent action walks left.")
    if m is not None:
        v = m.get("verdict", {})
        if not v.get("inferred_beats_copy_at"):
            out.append("Rollouts do not beat copying the prompt frame in PSNR.")
        if v.get("random_loses_to_copy_at"):
            out.append("Random actions do worse than standing still: part of ΔtPSNR is random actions "
                       "breaking the scene, not control.")
        acts = (m.get("playability") or {}).get("actions") or []
        if acts:
            worst = max(acts, key=lambda r: r["broken"])
            if worst["broken"] > 0:
                out.append(f"Up to {worst['broken']:.1%} of an action's frames visibly break (a={worst['action']}).")
        recon = m["videos"]["reconstruction"]["psnr"]
        if recon is not None:
            out.append(f"The tokenizer reconstructs frames at {_num(recon['mean'])} dB PSNR: the ceiling of every rollout.")
    out.append(f"{h}×{w} frames only.")
    return [f"- {x}" for x in out]


def _run_configs(ckpt: Path) -> list[Path]:
    """The config.yaml files LightningCLI saved for the run of `ckpt` (ROOT/ckpt/last.ckpt →
    ROOT/lightning_logs/version_N/config.yaml, or ROOT/config.yaml), oldest run first."""
    root = ckpt.parent.parent
    found = [root / "config.yaml"] if (root / "config.yaml").is_file() else []
    return found + sorted((root / "lightning_logs").glob("version_*/config.yaml"), key=lambda p: p.stat().st_mtime)


def _stage(ckpt: Path, name: str) -> tuple[str, dict, str | None]:
    """("<name> N steps, about M min", its run's data section, the world or checkpoint it started
    from (`model.init`) or None) from a Lightning checkpoint."""
    import torch  # only here: the rest of the card needs no torch
    import yaml

    configs = _run_configs(ckpt)
    saved = (yaml.safe_load(configs[-1].read_text()) or {}) if configs else {}
    data = saved.get("data") or {}
    args = (saved.get("model") or {}).get("init_args") or {}
    if args.get("train_part") == "decoder":
        head = ((args.get("overrides") or {}).get("tokenizer") or {}).get("pixel_head_channels")
        name += (" decoder" + (f" with a pixel head of {head} channels" if head else "")
                 + " (encoder and codebook frozen)")
    if args.get("distill_guidance"):
        name = "stage 2 (dynamics, action model frozen)"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    line = f"{name} {state['global_step']:,} steps" if "global_step" in state else name
    if configs:
        # LightningCLI writes config.yaml as a run starts and the checkpoint as it ends.
        minutes = (ckpt.stat().st_mtime - configs[0].stat().st_mtime) / 60
        if minutes > 0:
            line += f" in {minutes:,.0f} min" + (" (first start to last checkpoint)" if len(configs) > 1 else "")
    if data.get("batch_size") and data.get("seq_len"):
        line += f" of {data['batch_size']} × {data['seq_len']} frames"
        if data.get("across_episode_ends") is False:
            line += " within episodes"
    if args.get("action_dropout"):
        line += f", action dropout {args['action_dropout']:g}"
    if args.get("distill_guidance"):
        line += f", learning to draw in one pass its {guidance_phrase(args['distill_guidance'], 'none')}"
    return line, data, args.get("init")


def _provenance_rows(text: str) -> dict:
    """The `data`, `training` and `machine` rows of a card's summary table."""
    return {key: value for line in text.splitlines() for key in ("data", "training", "machine")
            if line.startswith(f"| {key} | ") and (value := line[len(key) + 5:].rstrip(" |"))}


def _world_training(world: Path) -> str | None:
    """The training row of the generated card of the world saved in `world`, or None."""
    path = world / CARD_FILE
    if not path.is_file() or GENERATED not in (text := path.read_text()):
        return None
    return _provenance_rows(text).get("training")


FURTHER = "; then trained further: "  # a training row's runs made after a saved world's own


def provenance_from_checkpoints(dynamics: str | Path, tokenizer: str | Path | None = None) -> dict:
    """What the training runs tell of a world's making: {"training": ..., "data": ...}. From each
    Lightning checkpoint its step count; from the config.yaml LightningCLI saved beside it the
    data folder (whose manifest.json names source and policy), clip shape and wall-clock time.
    The machine is not recorded by a run, so it stays out of the card unless given."""
    runs = [(name, *_stage(Path(path), name)) for path, name in
            ((tokenizer, "tokenizer"), (dynamics, "stage 2 (action model + dynamics)"))
            if path is not None and Path(path).is_file()]  # (name, line, data section, init)
    if not runs:
        return {}
    data = next((run_data for *_, run_data, _ in reversed(runs) if run_data), {})  # stage 2's data is the world's
    fresh, befores, further = [], [], []
    for name, line, run_data, init in runs:
        if run_data.get("data") and run_data["data"] != data.get("data"):
            line += f" on `{run_data['data']}`"  # e.g. a tokenizer trained on other clips than stage 2
        if init and (before := _world_training(Path(init))):
            # Trained further from a saved world: its card tells how that world was made.
            befores += [before] if before not in befores else []
            further.append(line)
        else:
            fresh.append(line)
    # Told once: a world's card that a later world's card extends, and a run the later card tells.
    befores = [b for b in befores if not any(o != b and o.startswith(b) for o in befores)]
    told = {run for b in befores if FURTHER in b for run in b.split(FURTHER, 1)[1].split("; ")}
    further = [line for line in further if line not in told]
    out = {"training": "; ".join(fresh + befores) + (FURTHER + "; ".join(further) if further else "")}
    folder = data.get("data")
    if folder and (Path(folder) / "manifest.json").is_file():
        out["data"] = data_line(json.loads((Path(folder) / "manifest.json").read_text()), str(folder))
    elif folder:
        out["data"] = f"`{folder}`"
    return out


def card(world: str | Path, metrics: dict | str | Path | None = None, provenance: dict | None = None,
         name: str | None = None, measured: dict | None = None) -> str:
    """The card of the world saved in `world` as Markdown. `metrics`: an `opengenie eval` metrics.json
    (dict or path; default: one kept in the world's folder, left out when it measured other
    weights; given ones of other weights are refused); `provenance`: what is known of its making,
    keys `data`, `training`, `machine` (one line each), shown in the summary table; `measured`: the
    result of `opengenie.evaluation.labels.label_world` (the motion behind each label)."""
    world = Path(world)
    config = json.loads((world / "config.json").read_text())
    stale = None  # an evaluation kept in the folder that measured weights exported over since
    if metrics is None:
        kept, stale = _kept_evaluation(world)
        metrics = json.loads(kept.read_text()) if kept is not None else None
    else:
        if isinstance(metrics, (str, Path)):
            metrics = json.loads(Path(metrics).read_text())
        if not measures_these_weights(world, metrics):
            raise ValueError(f"the metrics given measured other weights than {world / 'model.safetensors'} "
                             "(their settings.weights_sha256 differs): evaluate this world with `opengenie eval`")
    parameters, dtype = weights_summary(world) if (world / "model.safetensors").is_file() else (None, None)
    p = provenance or {}
    rows = [("model", model_line(config, parameters, dtype))]
    rows += [(key, p[key]) for key in ("data", "training", "machine") if p.get(key)]
    skip = config.get("frame_skip", 1)
    rows.append(("frame step", f"{skip} video frame{'s' if skip > 1 else ''} per world step (`frame_skip` {skip})"))
    lines = [f"# {name or world.name}", "", GENERATED, "",
             f"A world for opengenie: `Genie.from_pretrained(\"{world}\")`, `opengenie play --model {world}`.", "",
             "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], "",
             "## What its actions do", "", *_actions(config, metrics, measured), ""]
    if metrics is not None:
        lines += ["## Evaluation", "", *_evaluation(metrics, config), ""]
    elif stale is not None:
        then = json.loads(stale.read_text())["settings"]
        lines += ["## Evaluation", "", f"`{stale.relative_to(world)}` measured other weights than this folder's "
                  "(a world exported over them since), so this card leaves it out: `opengenie eval --model "
                  f"{world} --data {then.get('data', 'DATA')} --split {then.get('split', 'all')} --out {stale.parent}` "
                  "measures these and refreshes this card.", ""]
    lines += ["## Limitations", "", *_limitations(config, metrics), ""]
    return "\n".join(lines)


def write_card(world: str | Path, metrics: dict | str | Path | None = None, provenance: dict | None = None,
               measured: dict | None = None, force: bool = False) -> Path | None:
    """Write `card(...)` to the world's README.md. A README.md that this module did not write (a
    hand-written card) is kept unless `force`; returns the path written, or None when kept."""
    path = Path(world) / CARD_FILE
    old = path.read_text() if path.is_file() else ""
    if old and GENERATED not in old and not force:
        return None
    if provenance is None:  # a refresh (after `opengenie label`) keeps what export knew of the runs
        provenance = _provenance_rows(old)
    path.write_text(card(world, metrics, provenance, measured=measured))
    return path
