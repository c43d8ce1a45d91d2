"""Training through Lightning: configs, both stages end to end on real CoinRun clips, exact
resumption, cached tokens, export, error messages, the GAN variant's two optimisers."""

import csv
import glob
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("procgen")

import lightning as L  # noqa: E402

from opengenie import Genie  # noqa: E402
from opengenie.data import generate_coinrun  # noqa: E402
from opengenie.training import (DynamicsModule, GenieDataModule, ResumableSampler, TokenClipDataset,  # noqa: E402
                                TokenizerModule, export, main, tokenize_episodes)
from opengenie.training.cli import parse  # noqa: E402
from opengenie.training.schedule import WarmupSchedule  # noqa: E402

CONFIGS = Path(__file__).parent.parent / "configs"
SEQ = 4  # frames per clip in these tests (the tiny models take up to 8)


@pytest.fixture(scope="module")
def coinrun(tmp_path_factory):
    """A few real CoinRun levels of ~40 steps."""
    out = tmp_path_factory.mktemp("coinrun")
    generate_coinrun(out, levels=3, steps_per_level=40, progress=False)
    return out


def _args(config: str, data: Path, run: Path, steps: int, *extra: str) -> list[str]:
    """CLI arguments for a short, quiet run of a shipped config on the test data."""
    return ["fit", "--config", str(CONFIGS / config), "--data.data", str(data), "--data.seq_len", str(SEQ),
            "--data.batch_size", "2", "--data.num_workers", "0", "--data.train_split", "null",
            "--data.val_split", "null", "--trainer.max_steps", str(steps), "--trainer.default_root_dir", str(run),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.log_every_n_steps", "1", "--checkpoint.dirpath", str(run / "ckpt"),
            "--checkpoint.every_n_train_steps", "2", "--images.every_n_steps", "2", *extra]


def _csv_losses(run: Path) -> dict[int, float]:
    """step → train/loss from the CSV logger's metrics.csv files under `run`."""
    losses = {}
    for path in sorted(glob.glob(str(run / "**" / "metrics.csv"), recursive=True)):
        for row in csv.DictReader(open(path)):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


CSV = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir"]


@pytest.fixture(scope="module")
def tokenizer_run(coinrun, tmp_path_factory):
    """Stage 1 of the tiny config, 2 steps, through the `opengenie train` command."""
    from opengenie.cli import main as opengenie

    run = tmp_path_factory.mktemp("tok")
    opengenie(["train", "tokenizer", *_args("tokenizer/tiny.yaml", coinrun, run, 2)[1:]])
    return run


def test_shipped_configs_parse():
    """Every YAML under configs/ parses, type-checks and resolves to valid model configs."""
    paths = sorted(CONFIGS.glob("*/*.yaml"))
    assert {p.stem for p in paths} >= {"tiny", "coinrun"} and len(paths) >= 4
    for path in paths:
        config = parse(str(path))
        stage = path.parent.name
        assert config["model"]["class_path"].endswith({"tokenizer": "TokenizerModule", "dynamics": "DynamicsModule"}[stage])
        assert config["trainer"]["max_steps"] > 0 and config["checkpoint"]["save_last"]


def test_stage1_two_steps(tokenizer_run):
    """`opengenie train tokenizer` runs, writes last.ckpt with the full GenieConfig, the data
    position and the random state, and logs reconstructions, codebook health and MFU."""
    ckpt = torch.load(tokenizer_run / "ckpt" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert set(ckpt["hyper_parameters"]["genie_config"]) == {"tokenizer", "action", "dynamics"}
    assert ckpt["GenieDataModule"]["consumed"] == 2 * 2 and "rng" in ckpt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(glob.glob(str(tokenizer_run / "**" / "events.*"), recursive=True)[0])
    events.Reload()
    assert "images/reconstruction" in events.Tags()["images"]
    assert {"train/loss", "train/codebook/perplexity", "perf/tokens_per_s", "perf/mfu"} <= set(events.Tags()["scalars"])


@pytest.fixture(scope="module")
def dynamics_run(coinrun, tokenizer_run, tmp_path_factory):
    """Stage 2 of the tiny config, 2 steps, encoding clips on the fly."""
    run = tmp_path_factory.mktemp("dyn")
    main(_args("dynamics/tiny.yaml", coinrun, run, 2, "--data.tokens", "false",
               "--model.init_args.tokenizer", str(tokenizer_run / "ckpt" / "last.ckpt")), stage="dynamics")
    return run


def test_stage2_two_steps_and_export(dynamics_run, tokenizer_run, tmp_path):
    """Stage 2 trains; its checkpoint exports to a dir that Genie.from_pretrained loads and steps."""
    from opengenie.cli import main as opengenie

    ckpt = dynamics_run / "ckpt" / "last.ckpt"
    opengenie(["export", "--dynamics", str(ckpt), "--tokenizer", str(tokenizer_run / "ckpt" / "last.ckpt"),
               "--out", str(tmp_path / "world"), "--dtype", "bf16"])
    world = Genie.from_pretrained(tmp_path / "world")
    frame = world.reset(np.zeros((64, 64, 3), np.uint8), seed=0)
    assert frame.shape == (64, 64, 3) and world.step(1).shape == (64, 64, 3)
    trained = torch.load(ckpt, weights_only=True)["state_dict"]["dynamics.head.weight"]
    assert torch.equal(world.dynamics.head.weight, trained.to(torch.bfloat16).float())


def test_export_refuses_another_tokenizer(dynamics_run, tmp_path):
    """Exporting with a tokenizer other than the one stage 2 trained on is an error."""
    other = TokenizerModule(preset="tiny")  # untrained: not the tokenizer stage 2 used
    torch.save({"state_dict": other.state_dict(), "hyper_parameters": dict(other.hparams)}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="another tokenizer"):
        export(dynamics_run / "ckpt" / "last.ckpt", tmp_path / "w", tokenizer=tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="tokenizer \\(stage 1\\) checkpoint"):
        export(tmp_path / "other.ckpt", tmp_path / "w")


def test_decoder_trained_further_keeps_the_tokens_and_exports(coinrun, tokenizer_run, dynamics_run, tmp_path):
    """`train_part: decoder` from a trained tokenizer changes only the decoder: clips keep their
    ids, and stage 2 (trained on the old tokenizer) exports with the new decoder."""
    first = tokenizer_run / "ckpt" / "last.ckpt"
    main(_args("tokenizer/tiny.yaml", coinrun, tmp_path / "dec", 2, "--model.init_args.init", str(first),
               "--model.init_args.train_part", "decoder", "--model.init_args.warmup_steps", "1"), stage="tokenizer")
    before = torch.load(first, weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "dec" / "ckpt" / "last.ckpt", weights_only=True)["state_dict"]
    token_side = [k for k in before if k.split(".")[1] in ("embed", "encoder", "to_code", "quantizer")]
    decoder = [k for k in before if k.split(".")[1] in ("from_code", "decoder", "unpatch")]
    assert token_side and decoder
    assert all(torch.equal(before[k], after[k]) for k in token_side)
    assert sum(not torch.equal(before[k], after[k]) for k in decoder) >= len(decoder) // 2

    world = export(dynamics_run / "ckpt" / "last.ckpt", tmp_path / "world", tokenizer=tmp_path / "dec" / "ckpt" / "last.ckpt")
    genie = Genie.from_pretrained(world)
    assert torch.equal(genie.tokenizer.unpatch.proj.weight, after["tokenizer.unpatch.proj.weight"])
    old = export(dynamics_run / "ckpt" / "last.ckpt", tmp_path / "old")
    video = torch.from_numpy(np.load(next(Path(coinrun).glob("**/*.npz")))["frames"][:SEQ]).permute(3, 0, 1, 2)
    video = (video.float() / 127.5 - 1)[None]
    with torch.no_grad():
        assert torch.equal(genie.tokenizer.tokenize(video)[1], Genie.from_pretrained(old).tokenizer.tokenize(video)[1])


def test_pixel_head_grown_on_a_trained_decoder_exports_into_the_world(coinrun, tokenizer_run, dynamics_run, tmp_path):
    """`model.overrides` may add a pixel head to a trained tokenizer (`model.init`): it trains with
    the decoder, the ids stay, and the world exported with it decodes through the head. Any other
    override is refused: it would change what the trained weights mean."""
    first = tokenizer_run / "ckpt" / "last.ckpt"
    main(_args("tokenizer/tiny.yaml", coinrun, tmp_path / "head", 2, "--model.init_args.init", str(first),
               "--model.init_args.train_part", "decoder", "--model.init_args.warmup_steps", "1",
               "--model.init_args.overrides", '{"tokenizer": {"pixel_head_channels": 8, "pixel_head_blocks": 1}}'),
         stage="tokenizer")
    after = torch.load(tmp_path / "head" / "ckpt" / "last.ckpt", weights_only=True)
    assert after["hyper_parameters"]["genie_config"]["tokenizer"]["pixel_head_channels"] == 8
    assert after["state_dict"]["tokenizer.pixel_head.out.2.weight"].abs().sum() > 0  # trained away from zero

    world = Genie.from_pretrained(export(dynamics_run / "ckpt" / "last.ckpt", tmp_path / "world",
                                         tokenizer=tmp_path / "head" / "ckpt" / "last.ckpt"))
    plain = Genie.from_pretrained(export(dynamics_run / "ckpt" / "last.ckpt", tmp_path / "plain"))
    assert world.tokenizer.pixel_head is not None and plain.tokenizer.pixel_head is None
    head = {k: v for k, v in after["state_dict"].items() if k.startswith("tokenizer.pixel_head.")}
    assert head and all(torch.equal(world.state_dict()[k], v) for k, v in head.items())
    video = torch.from_numpy(np.load(next(Path(coinrun).glob("**/*.npz")))["frames"][:SEQ]).permute(3, 0, 1, 2)
    video = (video.float() / 127.5 - 1)[None]
    with torch.no_grad():
        ids = world.tokenizer.tokenize(video)[1]
        assert torch.equal(ids, plain.tokenizer.tokenize(video)[1])
        assert not torch.allclose(world.tokenizer.decode_ids(ids), plain.tokenizer.decode_ids(ids), atol=1e-4)
    for overrides in ({"tokenizer": {"codebook_size": 64}}, {"dynamics": {"depth": 1}}):
        with pytest.raises(ValueError, match="may only add a decoder head"):
            TokenizerModule(init=str(first), overrides=overrides)


def test_stage2_trained_further_starts_from_the_given_world(coinrun, tokenizer_run, dynamics_run, tmp_path):
    """`model.init` starts stage 2 from a trained one (checkpoint or world dir): the same configs and
    weights, on longer clips than it was trained on; refused on another tokenizer or with overrides."""
    first = dynamics_run / "ckpt" / "last.ckpt"
    tokenizer = str(tokenizer_run / "ckpt" / "last.ckpt")
    trained = torch.load(first, weights_only=True)["state_dict"]
    world = export(first, tmp_path / "world")
    for init in (first, world):
        module = DynamicsModule(tokenizer=tokenizer, init=str(init))
        state = module.state_dict()
        assert all(torch.equal(state[k], v) for k, v in trained.items() if k.split(".")[0] in ("action_model", "dynamics"))
    main(_args("dynamics/tiny.yaml", coinrun, tmp_path / "long", 2, "--data.tokens", "false", "--data.seq_len", str(2 * SEQ),
               "--model.init_args.tokenizer", tokenizer, "--model.init_args.init", str(world),
               "--model.init_args.warmup_steps", "1"), stage="dynamics")
    after = torch.load(tmp_path / "long" / "ckpt" / "last.ckpt", weights_only=True)
    assert after["hyper_parameters"]["genie_config"] == torch.load(first, weights_only=True)["hyper_parameters"]["genie_config"]
    moved = [k for k in trained if k.startswith("dynamics.") and not torch.equal(trained[k], after["state_dict"][k])]
    assert len(moved) >= 10
    other = TokenizerModule(preset="tiny")
    torch.save({"state_dict": other.state_dict(), "hyper_parameters": dict(other.hparams)}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="another tokenizer"):
        DynamicsModule(tokenizer=str(tmp_path / "other.ckpt"), init=str(world))
    with pytest.raises(ValueError, match="leave out model.overrides"):
        DynamicsModule(tokenizer=tokenizer, init=str(world), overrides={"dynamics": {"depth": 1}})


def test_cached_tokens_give_the_same_loss(coinrun, tokenizer_run):
    """Cached tokens equal on-the-fly ones and give the same stage-2 loss with the same masks."""
    module = DynamicsModule(str(tokenizer_run / "ckpt" / "last.ckpt")).eval()
    tokenize_episodes(module.tokenizer, coinrun, seq_len=SEQ, batch_size=3, progress=False)
    data = TokenClipDataset(coinrun, SEQ)
    batch = torch.utils.data.default_collate([data[i] for i in (0, 5, len(data) - 1)])
    cached = module.compute_loss(batch, torch.Generator().manual_seed(0))
    fresh = module.compute_loss({k: v for k, v in batch.items() if k != "tokens"}, torch.Generator().manual_seed(0))
    assert torch.equal(module.tokenize(batch["video"]), batch["tokens"])
    assert torch.allclose(cached.loss, fresh.loss, rtol=1e-6)
    with pytest.raises(ValueError, match="seq_len=4"):
        TokenClipDataset(coinrun, SEQ + 1)


def test_stage1_resume_through_the_cli(coinrun, tmp_path):
    """`--ckpt_path last` continues a stopped stage-1 run with the uninterrupted run's losses
    (exactly; tests/test_resume.py covers restarts, warm-up and stage 2)."""
    main(_args("tokenizer/tiny.yaml", coinrun, tmp_path / "a", 4, *CSV, str(tmp_path / "a")))
    main(_args("tokenizer/tiny.yaml", coinrun, tmp_path / "b", 2, *CSV, str(tmp_path / "b")))
    main(_args("tokenizer/tiny.yaml", coinrun, tmp_path / "b", 4, *CSV, str(tmp_path / "b"), "--ckpt_path", "last"))
    whole, parts = _csv_losses(tmp_path / "a"), _csv_losses(tmp_path / "b")
    assert len(whole) == 4 and parts == whole
    # A checkpoint written before a config field existed resumes: the field had its default.
    old = torch.load(tmp_path / "b" / "ckpt" / "last.ckpt", weights_only=True)
    for field in ("pixel_head_channels", "pixel_head_blocks"):
        del old["hyper_parameters"]["genie_config"]["tokenizer"][field]
    torch.save(old, tmp_path / "older.ckpt")
    main(_args("tokenizer/tiny.yaml", coinrun, tmp_path / "c", 5, *CSV, str(tmp_path / "c"),
               "--ckpt_path", str(tmp_path / "older.ckpt")))
    assert torch.load(tmp_path / "c" / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 5
    # A changed model config that leaves every weight's shape alone is still refused, whether the
    # checkpoint is named "last" or by its path (Lightning would otherwise parse a path's saved
    # settings over the config given, silently undoing the change).
    changed = ["--model.init_args.overrides", "{tokenizer: {commitment_weight: 0.5}}"]
    for resume in ("last", str(tmp_path / "b" / "ckpt" / "last.ckpt")):
        with pytest.raises(ValueError, match=r"tokenizer\.commitment_weight: 0\.25 -> 0\.5"):
            main(_args("tokenizer/tiny.yaml", coinrun, tmp_path / "b", 6, *CSV, str(tmp_path / "b"), *changed,
                       "--ckpt_path", resume))


def test_a_resume_runs_the_config_given_and_says_what_changed(coinrun, tmp_path, caplog):
    """Resumed from a path, the run takes the learning rate given, not the checkpoint's, as one
    resumed with "last" does, and the start says which settings differ from the checkpoint's run."""
    main(_args("tokenizer/tiny.yaml", coinrun, tmp_path / "a", 2))
    runs = [("last", 3, "0.0007", "lr 0.001 -> 0.0007"),
            (str(tmp_path / "a" / "ckpt" / "last.ckpt"), 4, "0.0005", "lr 0.0007 -> 0.0005")]
    for resume, steps, lr, note in runs:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            cli = main(_args("tokenizer/tiny.yaml", coinrun, tmp_path / "a", steps, "--model.init_args.lr", lr,
                             "--ckpt_path", resume))
        assert cli.model.hparams.lr == float(lr) and cli.trainer.global_step == steps
        notes = [r.getMessage() for r in caplog.records if "whose model settings differ" in r.getMessage()]
        assert len(notes) == 1 and notes[0].endswith(note) and "last.ckpt" in notes[0]


def test_invalid_config_values_give_clear_errors(coinrun, tmp_path):
    """Wrong values fail before training with a message naming the setting."""
    base = _args("tokenizer/tiny.yaml", coinrun, tmp_path, 1)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        main([*base, "--model.init_args.preset", "huge"])
    with pytest.raises(ValueError, match="model.lr must be > 0"):
        main([*base, "--model.init_args.lr", "-1"])
    with pytest.raises(ValueError, match="tokenizer.*unknown TokenizerConfig fields \\['dimm'\\]"):
        main([*base, "--model.init_args.overrides", "{tokenizer: {dimm: 3}}"])
    with pytest.raises(ValueError, match="patch_size=5"):
        main([*base, "--model.init_args.overrides", "{tokenizer: {patch_size: 5}}"])
    with pytest.raises(ValueError, match="needs a config whose model is DynamicsModule"):
        main(base, stage="dynamics")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main([*base, "--data.data", str(tmp_path / "nowhere")])
    with pytest.raises(ValueError, match="across_episode_ends: false cuts clips from an episode folder"):
        main([*base, "--data.across_episode_ends", "false", "--data.tokens", "true"])
    with pytest.raises(ValueError, match="^trainer.max_steps: expected int, got many$"):  # one line, the key named
        main([*base, "--trainer.max_steps", "many"])


class _Poisoned(TokenizerModule):
    """A tokenizer whose weights turn NaN before step 2."""

    def on_train_batch_start(self, batch, batch_idx):
        if self.global_step == 2:
            self.tokenizer.decoder_pos.data.fill_(float("nan"))


def test_non_finite_loss_names_the_step(coinrun):
    """A NaN loss stops training with a FloatingPointError that says at which step and gives
    the loss parts (the loop's check; the models' compute_loss leaves it to the loop)."""
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False)
    data = GenieDataModule(str(coinrun), seq_len=SEQ, batch_size=2, num_workers=0, train_split=None, val_split=None)
    with pytest.raises(FloatingPointError, match=r"step 2; parts: loss=nan, recon=nan"):
        trainer.fit(_Poisoned(warmup_steps=1), datamodule=data)


def test_gan_variant_uses_two_optimisers(coinrun, tmp_path):
    """The MagViT-2 tokenizer with a GAN loss trains by manual optimisation: the generator's
    optimiser holds no discriminator weight, and both players' weights move."""
    conv = lambda i, o: {"in_channels": i, "out_channels": o, "kernel_size": 3}  # noqa: E731
    overrides = {"tokenizer": {
        "kind": "magvit2", "code_dim": 6, "codebook_size": 64, "gan_loss_weight": 0.1, "perceptual_model": None,
        "enc_desc": [["causal", conv(3, 8)], ["spacetime_downsample", {**conv(8, 8), "time_factor": 1, "space_factor": 4}],
                     ["proj_out", {"in_channels": 8, "out_channels": 6}]],
        "dec_desc": [["causal", conv(6, 8)], ["spacetime_upsample", {"in_channels": 8, "time_factor": 1, "space_factor": 4}],
                     ["proj_out", {"in_channels": 8, "out_channels": 3}]],
        "disc_kwargs": {"inp_size": [64, 64], "model_dim": 8, "dim_mults": [1, 2], "down_step": [4, 4], "num_groups": 4}}}
    module = TokenizerModule(overrides=overrides, warmup_steps=1)
    assert not module.automatic_optimization
    disc = module.criterion.discriminator
    assert module.tokenizer.criterion is None  # the trainer's machinery, not the model's
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, use_distributed_sampler=False)
    trainer.fit(module, datamodule=GenieDataModule(str(coinrun), seq_len=SEQ, batch_size=2, num_workers=0,
                                                   train_split=None, val_split=None))
    opt_g, opt_d = (o.optimizer if hasattr(o, "optimizer") else o for o in trainer.optimizers)
    in_g = {id(p) for g in opt_g.param_groups for p in g["params"]}
    assert not in_g & {id(p) for p in disc.parameters()}
    assert {id(p) for g in opt_d.param_groups for p in g["params"]} == {id(p) for p in disc.parameters()}
    moved = {n for n, p in module.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any(n.startswith("criterion.discriminator.") for n in moved)
    assert any(n.startswith("tokenizer.encoder.") for n in moved)
    from opengenie.training.checkpoints import load_tokenizer

    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, tmp_path / "gan.ckpt")
    trained = load_tokenizer(tmp_path / "gan.ckpt")  # as stage 2 and export read it: the model alone
    assert trained.criterion is None and not any("discriminator" in k for k in trained.state_dict())
    with pytest.raises(ValueError, match="its trainer's"):
        trained(torch.zeros(1, 3, SEQ, 64, 64))


def test_sampler_stream_resumes_and_splits_over_ranks():
    """The data stream is a permutation per epoch; ranks read disjoint runs of it; starting
    at a position continues the same stream (with any number of ranks)."""
    take = lambda it, n: [next(it) for _ in range(n)]  # noqa: E731
    whole = take(iter(ResumableSampler(10, 2, seed=3)), 40)
    assert sorted(i for e, i in whole[:10]) == list(range(10)) and whole[10][0] == 1
    ranks = [take(iter(ResumableSampler(10, 2, seed=3, rank=r, world_size=2)), 10) for r in range(2)]
    interleaved = [x for step in range(5) for r in range(2) for x in ranks[r][2 * step: 2 * step + 2]]
    assert interleaved == whole[:20]
    assert take(iter(ResumableSampler(10, 2, seed=3, start=14)), 6) == whole[14:20]


def test_schedule_warms_up_then_decays():
    """Linear warm-up to the peak, then constant or a cosine down to min_lr at the last step."""
    cosine = WarmupSchedule(warmup_steps=10, total_steps=110, kind="cosine", min_ratio=0.1)
    assert cosine(0) == pytest.approx(0.1) and cosine(9) == pytest.approx(1.0)
    assert cosine(60) == pytest.approx(0.55) and cosine(110) == pytest.approx(0.1) and cosine(500) == pytest.approx(0.1)
    assert WarmupSchedule(10, 110)(50) == 1.0


def test_shard_stream_resumes_exactly(coinrun, tmp_path):
    """Training from tar shards: a stream told to skip k batches continues the full stream,
    across an epoch boundary too."""
    pytest.importorskip("webdataset")
    from opengenie.data import write_shards
    from opengenie.training.data import ShardStream

    write_shards(coinrun, tmp_path / "shards", chunk_frames=20, progress=False)  # 30 clips: 15 batches an epoch

    def batches(skip: int, n: int) -> list[dict]:
        stream = ShardStream(str(tmp_path / "shards"), SEQ, 1, 2, 0, seed=0, rank=0, world_size=1, skip=skip)
        return [batch for _, batch in zip(range(n), stream)]

    whole, resumed = batches(0, 20), batches(13, 7)
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(whole[13:], resumed))
    data = GenieDataModule(shards=str(tmp_path / "shards"), seq_len=SEQ, batch_size=2)
    assert isinstance(data.train_dataloader(), ShardStream) and data.sample_batch(2) is None


def test_validation_nmi_is_pooled_over_the_epoch(coinrun, tokenizer_run):
    """val/action/nmi is the NMI of all validation transitions together, not a mean of
    per-batch NMIs (which small batches bias upwards)."""
    from opengenie.evaluation.actions import nmi

    torch.manual_seed(0)
    module = DynamicsModule(str(tokenizer_run / "ckpt" / "last.ckpt"))
    data = GenieDataModule(str(coinrun), seq_len=SEQ, batch_size=2, num_workers=0, train_split=None,
                           val_split=None)
    data.setup()
    data.val_set = data.train_set  # validate on the few clips there are
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=4)
    logged = trainer.validate(module, datamodule=data, verbose=False)[0]["val/action/nmi"]
    latent, true, per_batch = [], [], []
    for batch in list(data.val_dataloader())[:4]:
        ids, acts = module.infer_actions(batch["video"]), batch["actions"][:, :-1]
        latent.append(ids.flatten()), true.append(acts.flatten()), per_batch.append(nmi(ids, acts))
    pooled = nmi(torch.cat(latent), torch.cat(true))
    assert logged == pytest.approx(pooled, abs=1e-6)
    assert pooled != pytest.approx(sum(per_batch) / len(per_batch), abs=1e-3)


def _tiny_stage2(tokenizer_run, **options) -> DynamicsModule:
    """A tiny stage 2 over the test run's tokenizer, from the same initial weights every time."""
    torch.manual_seed(0)
    return DynamicsModule(str(tokenizer_run / "ckpt" / "last.ckpt"), preset="tiny", **options)


def _clip_loss(stage: DynamicsModule, frames: int):
    """The stage's loss on one fixed random batch of 2 clips, with fixed mask draws."""
    video = torch.rand(2, 3, frames, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return stage.compute_loss({"video": video}, torch.Generator().manual_seed(1))


def test_cotraining_sends_the_dynamics_loss_to_the_action_model(tokenizer_run):
    """With action_grad the dynamics loss has a gradient on the action encoder (same loss value); without it, none."""
    losses = []
    for cotrain in (False, True):
        stage = _tiny_stage2(tokenizer_run, action_grad=cotrain).train()
        ce = _clip_loss(stage, 8).logs["dynamics/cross_entropy"]
        (grad,) = torch.autograd.grad(ce, [stage.action_model.to_action.weight], allow_unused=True)
        assert (grad is not None and grad.abs().sum() > 0) == cotrain
        losses.append(float(ce))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.parametrize("option", ["context_noise", "action_dropout"])
def test_loss_options_change_training_steps_only(tokenizer_run, option):
    """model.context_noise corrupts the context of training steps, model.action_dropout hides
    their actions; validation reads clean tokens and every action."""
    clean, noisy = _tiny_stage2(tokenizer_run), _tiny_stage2(tokenizer_run, **{option: 1.0})
    again = _tiny_stage2(tokenizer_run)  # the control: a training step repeats exactly without the option
    ce = {}
    for mode in ("train", "eval"):
        for name, stage in (("clean", clean), ("noisy", noisy), ("again", again)):
            getattr(stage, mode)()
            with torch.no_grad():
                ce[mode, name] = float(_clip_loss(stage, 8).logs["dynamics/cross_entropy"])
    assert ce["eval", "clean"] == ce["eval", "noisy"]
    assert ce["train", "clean"] == ce["train", "again"] != ce["train", "noisy"]
    with pytest.raises(ValueError, match=option):
        _tiny_stage2(tokenizer_run, **{option: 2.0})


def test_compile_reaches_every_transformer_a_step_calls(tokenizer_run):
    """`compile: true` compiles the ST blocks of the trained networks, which stage 2's loss
    calls (compiling `forward` alone missed the dynamics model: its loss does not go through
    `forward`); parameter names, and so checkpoints, stay as they were."""
    from opengenie.nn.st_transformer import STBlock

    stage = _tiny_stage2(tokenizer_run, compile=True)
    keys = list(stage.state_dict())
    stage.configure_model()
    for module in (stage.action_model, stage.dynamics):
        blocks = [m for m in module.modules() if isinstance(m, STBlock)]
        assert len(blocks) >= 2 and all(m._compiled_call_impl is not None for m in blocks)
    assert all(m._compiled_call_impl is None for m in stage.tokenizer.modules())  # frozen: runs eager
    assert list(stage.state_dict()) == keys


@pytest.mark.slow
def test_compiled_step_matches_eager(tokenizer_run):
    """A compiled stage-2 loss equals the eager one on the same batch and mask draws."""
    losses = []
    for compiled in (False, True):
        stage = _tiny_stage2(tokenizer_run, compile=compiled).train()
        stage.configure_model()
        losses.append(float(_clip_loss(stage, 4).loss))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_distill_guidance_needs_a_world_to_learn_from(tokenizer_run):
    """model.distill_guidance learns from model.init's guided draws with the action model frozen:
    without a world, with a negative weight, or with action dropout or co-training, it refuses."""
    for options, match in (({"distill_guidance": 1.0}, "model.init"), ({"distill_guidance": -1.0}, ">= 0"),
                           ({"distill_guidance": 1.0, "action_dropout": 0.1}, "action_dropout"),
                           ({"distill_guidance": 1.0, "action_grad": True}, "action_grad"),
                           ({"distill_teacher": str(tokenizer_run)}, "set both")):
        with pytest.raises(ValueError, match=match):
            _tiny_stage2(tokenizer_run, **options)
