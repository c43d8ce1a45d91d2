"""Training data as a LightningDataModule, resumable to the exact clip.

Training reads an endless stream: epoch after epoch of a seeded permutation of the clips.
Position g of the stream is clip perm(seed, g // N)[g % N] of epoch g // N, so the state of
the data is one integer — how many clips the job has consumed — and it is written into every
checkpoint. A resumed run starts the stream where the checkpoint left it, whatever the number
of DataLoader workers (the data knows nothing of prefetching: it counts the batches that
reached a training step), and even on a different number of ranks.

Ranks take turns: each step consumes B·W clips of the stream (B per rank, W ranks), and rank
r reads the r-th run of B. Lightning must not wrap the sampler in a DistributedSampler: the
CLI sets `trainer.use_distributed_sampler: false` for that.

Tar shards (`opengenie data shards`) stream instead of being indexed: `ShardStream` reads
them epoch after epoch, each rank its own shards, and resumes by reading and dropping the
batches already trained on (exact, as the stream is deterministic; it costs a re-read).
"""

from __future__ import annotations

import os
from typing import Iterator

import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torch.utils.data._utils.collate import default_collate

from opengenie.data.datasets import EpisodeClipDataset
from opengenie.data.manifest import episode_paths


class ResumableSampler(Sampler):
    """An endless stream of `(epoch, index)` over a dataset of `size` items, for one rank.

    start: global stream position to begin at (clips consumed by all ranks so far).
    """

    def __init__(self, size: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start: int = 0) -> None:
        if size < 1:
            raise ValueError("the training data holds no clip")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start + self.rank * self.batch_size
        epoch, perm = -1, None
        while True:
            for g in range(position, position + self.batch_size):
                e, k = divmod(g, self.size)
                if e != epoch:
                    epoch, perm = e, self.permutation(e)
                yield e, int(perm[k])
            position += self.batch_size * self.world_size


class EpochIndexed(Dataset):
    """Wraps a clip dataset so that item `(epoch, index)` is clip `index` of that epoch; the
    epoch travels with the index, so workers never need to be told it."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)  # shifts the clip windows (see opengenie.data.clips)
        return self.dataset[index]


class ShardStream:
    """Endless batches of clips from tar shards for one rank: epoch 0, 1, ... of
    `ShardClipDataset`; the first `skip` batches are read and dropped (resumption)."""

    def __init__(self, urls: str, seq_len: int, frame_skip: int, batch_size: int, num_workers: int, *,
                 seed: int, rank: int, world_size: int, skip: int = 0) -> None:
        self.urls, self.seq_len, self.frame_skip = urls, seq_len, frame_skip
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.rank, self.world_size, self.skip = rank, world_size, skip

    def __iter__(self) -> Iterator[dict]:
        from opengenie.data.shards import ShardClipDataset

        skip, epoch = self.skip, 0
        while True:
            clips = ShardClipDataset(self.urls, self.seq_len, self.frame_skip, seed=self.seed, rank=self.rank,
                                     world_size=self.world_size)
            clips.set_epoch(epoch)  # before the loader copies it into its workers
            batches = 0
            for batch in DataLoader(clips, batch_size=self.batch_size, num_workers=self.num_workers, drop_last=True):
                batches += 1
                if skip:
                    skip -= 1
                    continue
                yield batch
            if not batches:
                raise ValueError(f"rank {self.rank} got no full batch of {self.batch_size} clips from the shards "
                                 f"{self.urls}; write more, smaller shards or lower data.batch_size")
            epoch += 1


class GenieDataModule(L.LightningDataModule):
    """Clips of an episode folder (`opengenie data coinrun|videos`), for either stage.

    data: the episode folder; or shards: tar shards (a folder, brace pattern or URL; see
    docs/data.md), streamed instead (training only; validation then needs `data`).
    seq_len / frame_skip: frames per clip and the step between them.
    batch_size: clips per rank and step. train_split / val_split: manifest splits (null: all
    episodes; a split without clips turns validation off). tokens: serve the cached tokens of
    `opengenie tokenize` with each clip (stage 2), instead of encoding clips at every step.
    across_episode_ends: false cuts each file at its `dones`, so that no clip runs across a
    restart of its level, in training and validation alike, as `opengenie eval` cuts its clips
    (an episode folder without cached tokens only).
    seed: the data order (independent of the model's seed).
    """

    def __init__(self, data: str | None = None, seq_len: int = 16, frame_skip: int = 1, batch_size: int = 8,
                 num_workers: int = 2, train_split: str | None = "train", val_split: str | None = "val",
                 tokens: bool = False, seed: int = 0, shards: str | None = None,
                 across_episode_ends: bool = True) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0 or seq_len < 2:
            raise ValueError(f"data: expected batch_size >= 1, num_workers >= 0, seq_len >= 2; got "
                             f"{batch_size}, {num_workers}, {seq_len}")
        if data is None and shards is None:
            raise ValueError("data: set data.data (an episode folder) or data.shards (tar shards)")
        if shards is not None and tokens:
            raise ValueError("data: cached tokens (data.tokens) need an episode folder, not shards")
        if not across_episode_ends and (tokens or shards is not None):
            raise ValueError("data: across_episode_ends: false cuts clips from an episode folder's files; cached "
                             "tokens (data.tokens) and shards hold windows cut already: set one of them back")
        if data is not None and not os.path.isdir(data):
            raise FileNotFoundError(f"data: episode folder {data} does not exist; make one with "
                                    "`opengenie data coinrun --out DIR ...`")
        self.data, self.shards, self.seq_len, self.frame_skip = data, shards, seq_len, frame_skip
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_split, self.val_split, self.tokens = train_split, val_split, tokens
        self.across_episode_ends = across_episode_ends
        self.consumed = 0  # clips of the training stream consumed, all ranks together
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def token_fingerprint(self) -> str | None:
        """The fingerprint of the tokenizer that made the cached tokens (None without)."""
        return self.train_set.index["tokenizer"] if self.tokens and self.train_set is not None else None

    def _dataset(self, split: str | None) -> Dataset:
        if self.tokens:
            from opengenie.training.tokens import TokenClipDataset

            return TokenClipDataset(self.data, self.seq_len, self.frame_skip, split=split)
        return EpisodeClipDataset(self.data, self.seq_len, self.frame_skip, split=split, seed=self.seed,
                                  across_episode_ends=self.across_episode_ends)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and self.shards is None:
            self.train_set = self._dataset(self.train_split)
        if self.val_set is None and self.val_split is not None and self.data is not None:
            try:
                has = bool(episode_paths(self.data, self.val_split))
                self.val_set = self._dataset(self.val_split) if has else None
            except ValueError:  # episodes all shorter than a clip
                self.val_set = None
            if self.val_set is None or len(self.val_set) == 0:
                cut = "" if self.across_episode_ends else " within episodes (data.across_episode_ends: false)"
                rank_zero_warn(f"data: no clips{cut} in split {self.val_split!r} of {self.data}; validation is off")
                self.val_set = None

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader | ShardStream:
        rank, world = self._rank()
        if self.shards is not None:
            return ShardStream(self.shards, self.seq_len, self.frame_skip, self.batch_size, self.num_workers,
                               seed=self.seed, rank=rank, world_size=world,
                               skip=self.consumed // (self.batch_size * world))
        sampler = ResumableSampler(len(self.train_set), self.batch_size, seed=self.seed, rank=rank,
                                   world_size=world, start=self.consumed)
        # The loader's own generator seeds the workers: the global RNG stays the model's alone.
        return DataLoader(EpochIndexed(self.train_set), batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        rank, world = self._rank()
        shard = Subset(self.val_set, range(rank, len(self.val_set), world))  # each clip on one rank
        return DataLoader(shard, batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def sample_batch(self, clips: int) -> dict | None:
        """`clips` clips spread evenly over the validation (else training) set, as one batch."""
        self.setup()
        data = self.val_set if self.val_set is not None else self.train_set
        if data is None:
            return None  # shards only: the image logger takes the first training batch
        n = min(clips, len(data))
        items = [data[i * len(data) // n] for i in range(n)]
        return default_collate(items) if items else None

    # --- the data position, saved in every checkpoint ----------------------------------

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        trainer = self.trainer
        if trainer is not None and trainer.training:
            self.consumed += batch["video"].shape[0] * trainer.world_size
        return batch

    def state_dict(self) -> dict:
        return {"consumed": self.consumed, "seed": self.seed, "across_episode_ends": self.across_episode_ends}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            rank_zero_warn(f"data: resuming with seed {self.seed}, the checkpoint was made with "
                           f"{state['seed']}; the clip order changes from here")
        if state.get("across_episode_ends", True) != self.across_episode_ends:
            rank_zero_warn(f"data: resuming with across_episode_ends {self.across_episode_ends}, the checkpoint was "
                           f"made with {state.get('across_episode_ends', True)}; the clips change from here")
        self.consumed = int(state["consumed"])
