"""The training data loader is built once per run: worker processes read each file once, and see
every epoch's patches (the data, hence the run, are those of training without workers)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

import unisp.train.loop as loop
from unisp.config import load_config
from unisp.data.patches import EpochItems, FrameCache, RawPatches
from unisp.raw.io import find_raw_files, read_raw
from unisp.train.config import TrainConfig
from unisp.train.distributed import Distributed, StepSampler
from unisp.train.run import RunDir


def recipe(tiny_set, workers: int) -> TrainConfig:
    """Stage 1 for 3 epochs of 2 steps (16 patches of 8), 2 of the 6 files held out."""
    return load_config(TrainConfig, None, [
        "mode=stage1", "pixel.l1=1", "losses.dla=false", f"data.raw_dir={tiny_set / 'raw'}", "data.patch=16",
        "data.samples_per_epoch=16", "data.val_fraction=0.34", f"data.workers={workers}", "batch_size=8",
        "steps=6", "log_every=1", "val_every=100", "ckpt_every=100", "device=cpu", "tensorboard=false",
    ])


def test_step_sampler_gives_each_step_its_epoch_and_shard():
    sampler = StepSampler(steps=5, steps_per_epoch=2, batch_size=4, ctx=Distributed())
    sampler.start = 3  # step 3 is the second of epoch 1, step 4 the first of epoch 2
    assert list(sampler) == [(1, 4), (1, 5), (1, 6), (1, 7), (2, 0), (2, 1), (2, 2), (2, 3)]
    second_rank = StepSampler(steps=5, steps_per_epoch=2, batch_size=4, ctx=Distributed(rank=1, world=2))
    second_rank.start = 3
    assert list(second_rank) == [(1, 5), (1, 7), (2, 1), (2, 3)]


def test_persistent_workers_draw_each_epochs_patches(tiny_set):
    files = find_raw_files(tiny_set / "raw")
    dataset = RawPatches(FrameCache(files, read_raw), len(files), size=16, samples=8, seed=3)
    sampler = StepSampler(steps=4, steps_per_epoch=2, batch_size=4, ctx=Distributed())
    loader = DataLoader(EpochItems(dataset), batch_size=4, sampler=sampler, num_workers=1, persistent_workers=True)
    for start in (0, 3):  # a second pass, as after a rollback, reuses the worker
        sampler.start = start
        for step, batch in enumerate(loader, start):
            epoch, position = divmod(step, 2)
            dataset.set_epoch(epoch)
            expected = torch.stack([dataset[4 * position + j]["raw"] for j in range(4)])
            assert torch.allclose(batch["raw"], expected, rtol=0, atol=1e-6), (start, step)


def test_training_builds_its_loader_once_and_reads_each_file_once(tiny_set, tmp_path, monkeypatch):
    built = []

    class RecordedLoader(DataLoader):
        def __init__(self, *args, **kwargs):
            built.append(kwargs)
            super().__init__(*args, **kwargs)

    reads = tmp_path / "reads.txt"

    def counted_read(path, *args, **kwargs):
        with open(reads, "a") as log:  # one short append per read, from any process
            log.write(f"{path}\n")
        return read_raw(path, *args, **kwargs)

    monkeypatch.setattr(loop, "DataLoader", RecordedLoader)
    monkeypatch.setattr(loop, "read_raw", counted_read)
    monkeypatch.setattr(loop, "PREFLIGHT_FILES", 1)  # the worker, not the training process, reads the others
    with_worker = loop.train(recipe(tiny_set, workers=1), tmp_path / "workers")
    assert len(built) == 1 and built[0]["persistent_workers"] and built[0]["num_workers"] == 1
    counts = Counter(reads.read_text().splitlines())
    assert max(counts.values()) == 1 and len(counts) >= 3, counts  # 3 epochs, yet no file read twice

    monkeypatch.undo()
    without = loop.train(recipe(tiny_set, workers=0), tmp_path / "main")
    assert with_worker["steps"] == without["steps"] == 6

    def losses(run: str) -> list[float]:
        return [r["loss/total"] for r in RunDir(tmp_path / run).metrics() if "loss/total" in r]

    assert losses("workers") == pytest.approx(losses("main"), rel=1e-5)


def test_resume_with_a_worker_is_exact(tiny_set, tmp_path):
    loop.train(recipe(tiny_set, workers=1), tmp_path / "full")
    part = recipe(tiny_set, workers=1)
    part.steps, part.ckpt_every = 3, 3  # stopped in the middle of epoch 1
    loop.train(part, tmp_path / "part")
    loop.train(load_config(TrainConfig, RunDir(tmp_path / "part").config_path(), ["steps=6"]), tmp_path / "part", resume=True)

    def losses(run: str) -> list[float]:
        return [r["loss/total"] for r in RunDir(tmp_path / run).metrics() if "loss/total" in r]

    assert losses("part") == losses("full")
