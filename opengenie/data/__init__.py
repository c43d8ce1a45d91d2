"""Data for Genie: CoinRun generation, video conversion, episode files, clip datasets, shards.

    opengenie.data.generate_coinrun(out, levels, steps_per_level, ...)   procgen CoinRun -> episodes
    opengenie.data.convert_videos(src, out, size=64, fps=None, ...)      video files -> episodes
    opengenie.data.EpisodeClipDataset(root, seq_len, frame_skip, split=) clips from an episode folder
    opengenie.data.VideoClipDataset(src, seq_len, frame_skip, size=)     clips decoded from videos
    opengenie.data.write_shards(src, out) / ShardClipDataset(urls, ...)  tar shards for scale

Each dataset item is {"video": (3, T, H, W) float in [-1, 1], "actions": (T,) int64 when the
episodes have them, ...}. Procgen, PyAV and WebDataset are imported only when used.
"""

from opengenie.data.clips import clip_span, to_video
from opengenie.data.coinrun import generate as generate_coinrun
from opengenie.data.coinrun import rollout_level
from opengenie.data.datasets import EpisodeClipDataset, VideoClipDataset
from opengenie.data.episodes import EpisodeFile, load_episode, validate_episode, write_episode
from opengenie.data.manifest import episode_paths, read_manifest, split_of
from opengenie.data.shards import ShardClipDataset, write_shards
from opengenie.data.videos import convert_videos, find_videos

__all__ = [
    "EpisodeClipDataset", "EpisodeFile", "ShardClipDataset", "VideoClipDataset", "clip_span",
    "convert_videos", "episode_paths", "find_videos", "generate_coinrun", "load_episode",
    "read_manifest", "rollout_level", "split_of", "to_video", "validate_episode", "write_episode",
    "write_shards",
]
