"""The manifest of an episode folder: `manifest.json` beside the episode files.

    {
      "format": "opengenie-episodes", "version": 1,
      "source": "coinrun" | "videos",
      "settings": {...the generation flags...},
      "counts": {"episodes": N, "frames": F, "skipped": S,
                 "splits": {"train": {"episodes": .., "frames": ..}, "val": .., "test": ..}},
      "episodes": [{"file": "level_000007.npz", "frames": 1000, "group": "7", "split": "train",
                    ...source-specific fields...}, ...],
      "skipped": [{"source": "broken.mp4", "reason": "..."}, ...]
    }

Splits are assigned per *group* (a CoinRun level seed, or a source video), never per file, so
chunks of one video or one level never land in two splits. The assignment hashes the group name:
it is stable when more levels are generated later, and needs no random state.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")


def split_of(group: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> str:
    """The split ("train", "val" or "test") of one group, from a hash of its name."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction > 1:
        raise ValueError(
            f"expected val_fraction, test_fraction >= 0 summing to at most 1, "
            f"got {val_fraction} and {test_fraction}"
        )
    digest = hashlib.sha256(str(group).encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def write_manifest(
    root: str | os.PathLike,
    *,
    source: str,
    settings: dict,
    episodes: Iterable[dict],
    skipped: Iterable[dict] = (),
) -> dict:
    """Write `root/manifest.json` atomically and return it. Each episode dict needs
    "file", "frames" and "split"."""
    episodes = sorted(episodes, key=lambda e: e["file"])
    skipped = list(skipped)
    splits = {
        s: {
            "episodes": sum(e["split"] == s for e in episodes),
            "frames": sum(e["frames"] for e in episodes if e["split"] == s),
        }
        for s in SPLITS
    }
    manifest = {
        "format": "opengenie-episodes",
        "version": 1,
        "source": source,
        "settings": settings,
        "counts": {
            "episodes": len(episodes),
            "frames": sum(e["frames"] for e in episodes),
            "skipped": len(skipped),
            "splits": splits,
        },
        "episodes": episodes,
        "skipped": skipped,
    }
    path = Path(root) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    return manifest


def read_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of an episode folder, or None when it has none."""
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); remake the folder with "
                         "`opengenie data coinrun|videos`, or delete the file to use every .npz in it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "opengenie-episodes":
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path}: expected an opengenie episode manifest, got format {found!r}")
    return manifest


def check_settings(root: str | os.PathLike, settings: dict, keys: Iterable[str]) -> None:
    """Refuse to add episodes to a folder made with different settings (it would mix them)."""
    manifest = read_manifest(root)
    if manifest is None:
        return
    old = manifest.get("settings", {})
    for key in keys:
        if key in old and old[key] != settings.get(key):
            raise ValueError(
                f"{root} holds episodes made with {key}={old[key]!r}, but this run asks for "
                f"{key}={settings.get(key)!r}; use another --out folder or the same settings"
            )


def episode_paths(root: str | os.PathLike, split: str | None = None) -> list[Path]:
    """The episode files of a folder, sorted; only those of `split` when given.

    Uses the manifest when there is one; without it every `*.npz` counts and `split` must be None.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"episode folder {root} does not exist")
    if split is not None and split not in SPLITS:
        raise ValueError(f"expected split one of {SPLITS} or None, got {split!r}")
    manifest = read_manifest(root)
    if manifest is None:
        if split is not None:
            raise ValueError(
                f"{root} has no {MANIFEST}, so it has no splits; pass split=None or "
                "create the folder with `opengenie data coinrun|videos`"
            )
        return sorted(p for p in root.glob("*.npz") if not p.name.startswith("."))
    return [root / e["file"] for e in manifest["episodes"] if split is None or e["split"] == split]


def describe_folder(
    root: str | os.PathLike,
    pattern: str,
    group_of: Callable[[Path], str],
    val_fraction: float,
    test_fraction: float,
    extra: Callable[[Path], dict] | None = None,
) -> list[dict]:
    """Manifest entries for the episode files in `root` matching `pattern`.

    Entries of the existing manifest are kept as they are (their files are not reopened);
    a new file is described from its header only. `group_of` names the split group.
    """
    from opengenie.data.episodes import EpisodeFile  # episodes.py imports nothing from here

    root = Path(root)
    old = {e["file"]: e for e in (read_manifest(root) or {}).get("episodes", [])}
    entries = []
    for path in sorted(root.glob(pattern)):
        if path.name.startswith("."):
            continue
        if path.name in old:
            entries.append(old[path.name])
            continue
        group = group_of(path)
        entry = {"file": path.name, "frames": len(EpisodeFile(path)), "group": group,
                 "split": split_of(group, val_fraction, test_fraction)}
        entry.update(extra(path) if extra else {})
        entries.append(entry)
    return entries
