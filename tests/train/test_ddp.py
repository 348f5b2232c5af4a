"""Data-parallel training under torchrun: 2 CPU processes with gloo against one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from unisp.config import load_config
from unisp.errors import ConfigError
from unisp.models.checkpoint import load_model
from unisp.train.config import TrainConfig
from unisp.train.distributed import Distributed, local_batch_size, shard_indices
from unisp.train.loop import train
from unisp.train.run import RunDir

REPO = Path(__file__).resolve().parents[2]

#: Unpaired training with DLA and the three discriminators stepping every step (random backbones),
#: global batch 4: 2 patches per process.
ARGS = ["mode=unpaired", "losses.profile=random", "data.patch=32", "data.samples_per_epoch=16",
        "data.val_fraction=0", "batch_size=4", "d_every=1", "log_every=1", "ckpt_every=1", "val_every=100",
        "device=cpu", "tensorboard=false", "deterministic=true"]

#: Run under torchrun: 1 step, then --resume to 2 (as ``unisp train --resume``), then save this
#: rank's generator weights, captured as the loop hands the model to the rank-0 broadcast. The
#: script holds the process group across both runs (a group cannot be re-created under torchrun's
#: store); ``unisp train`` creates and destroys its own.
WORKER = textwrap.dedent('''
    import os, sys
    from pathlib import Path
    import torch
    import torch.distributed as dist
    from unisp.config import load_config
    from unisp.models.base import Generator
    from unisp.train import distributed, loop
    from unisp.train.config import TrainConfig
    from unisp.train.run import RunDir

    out, args = Path(sys.argv[1]), sys.argv[2:]
    seen = []
    broadcast = distributed.broadcast_module_
    def capture(module, ctx):
        if isinstance(module, Generator):
            seen.append(module)
        broadcast(module, ctx)
    distributed.broadcast_module_ = capture
    dist.init_process_group("gloo")
    loop.train(load_config(TrainConfig, None, args + ["steps=1"]), out)
    loop.train(load_config(TrainConfig, RunDir(out).config_path(), ["steps=2"]), out, resume=True)
    torch.save(seen[-1].state_dict(), out.parent / f"rank{os.environ['RANK']}.pt")
    dist.destroy_process_group()
''')


def test_shards_partition_each_global_batch():
    world = 2
    shards = [shard_indices(3, 5, 4, Distributed(rank=r, world=world)) for r in range(world)]
    assert shards == [[12, 14, 16, 18], [13, 15, 17, 19]]
    assert sorted(shards[0] + shards[1]) == list(range(12, 20))  # steps 3 and 4 of one process
    assert shard_indices(3, 5, 4, Distributed()) == list(range(12, 20))
    assert local_batch_size(4, Distributed(rank=1, world=2)) == 2
    with pytest.raises(ConfigError, match="batch_size"):
        local_batch_size(5, Distributed(rank=0, world=2))


def test_two_gloo_processes_match_one_process(tiny_set, tmp_path):
    data = [f"data.raw_dir={tiny_set / 'raw'}", f"data.rgb_dir={tiny_set / 'rgb'}"]
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path / "ddp"), *data, *ARGS]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # the ranks never drift apart
    written, header = load_model(tmp_path / "ddp" / "model.safetensors")  # rank 0 wrote, once
    assert header["training"]["step"] == 2
    assert all(torch.equal(rank0[k], v) for k, v in written.state_dict().items())

    # One process, the same global batch of 4, 2 steps: the same weights up to float rounding
    # (sums are taken in another order), the same logged losses (rank 0 logs the ranks' mean) and
    # DLA weights. The colour term's weight agrees less closely (~1e-3, while its loss agrees to
    # ~1e-6): its gradient crosses the random backbone's ReLU6 kinks, where rounding-level input
    # differences switch units on or off.
    # The workers run one thread each (OMP_NUM_THREADS=1 above), so the reference does too: with
    # another thread count the CPU kernels split their sums differently, and on some CPUs (an
    # Intel Xeon with AVX-512/AMX) two Adam steps turn those rounding differences on near-zero
    # gradients into learning-rate-sized weight differences.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(load_config(TrainConfig, None, [*data, *ARGS, "steps=2"]), tmp_path / "single")
    finally:
        torch.set_num_threads(threads)
    assert single["processes"] == 1
    reference, _ = load_model(tmp_path / "single" / "model.safetensors")
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-4, atol=1e-5, msg=key)
    def logged(run: str, prefixes: tuple[str, ...]) -> torch.Tensor:
        records = [r for r in RunDir(tmp_path / run).metrics() if "loss/total" in r]
        return torch.tensor([[r[k] for k in sorted(r) if k.startswith(prefixes)] for r in records])

    assert len(logged("ddp", ("loss/",))) == 2  # one record per step: only rank 0 logs
    values = ("loss/", "d/")
    torch.testing.assert_close(logged("ddp", values), logged("single", values), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logged("ddp", ("dla_weight/",)), logged("single", ("dla_weight/",)), rtol=5e-3, atol=0)
