"""Nothing lost: SIGKILL mid-run and mid-save, NaN/Inf steps, full disks, unwritable folders, crafted resume files.

Test hook: ``UNISP_TEST_KILL_BEFORE_RENAME=NAME:N`` (:data:`unisp.fileio.KILL_HOOK_ENV`) makes a
process SIGKILL itself while writing the N-th file called NAME, after the temporary file is
complete and before the rename: the one moment a non-atomic save would leave a broken file.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from unisp import fileio
from unisp.cli import app
from unisp.config import load_config
from unisp.errors import OutputError, UnispError
from unisp.models.checkpoint import load_model
from unisp.train.config import TrainConfig
from unisp.train.distributed import Distributed
from unisp.train.guard import NonFiniteGuard, TrainingDiverged
from unisp.train.loop import discriminator_update, train
from unisp.train.objective import Objective
from unisp.train.run import RESUME_FILE, RunDir

REPO = Path(__file__).resolve().parents[2]
#: A stage-1 run small enough to take a few ms a step; deterministic, no validation, no TensorBoard.
ARGS = ["mode=stage1", "pixel.l1=1", "losses.dla=false", "data.patch=16",
        "data.samples_per_epoch=32", "data.val_fraction=0", "batch_size=4", "lr=0.005",
        "log_every=1", "val_every=1000", "ckpt_every=5", "device=cpu", "tensorboard=false", "deterministic=true"]


def recipe(tiny_set, **overrides) -> TrainConfig:
    extra = [f"{k}={v}" for k, v in overrides.items()]
    return load_config(TrainConfig, None, [f"data.raw_dir={tiny_set / 'raw'}", *ARGS, *extra])


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss/total"]) for r in RunDir(run).metrics() if "loss/total" in r]


@pytest.fixture(scope="module")
def reference(tiny_set, tmp_path_factory) -> Path:
    """An uninterrupted 20-step run: the losses every interrupted run must reproduce."""
    run = tmp_path_factory.mktemp("reference") / "run"
    train(recipe(tiny_set, steps=20), run)
    return run


def start_training(tiny_set, run: Path, steps: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``unisp train`` in a fresh process (stdout/stderr to a log file in the run's parent)."""
    cmd = [sys.executable, "-m", "unisp.cli", "train", "--out", str(run), f"data.raw_dir={tiny_set / 'raw'}", *ARGS, f"steps={steps}"]
    log = open(run.parent / "train.log", "wb")
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def resume_cli(run: Path, steps: int) -> None:
    result = CliRunner().invoke(app, ["train", "--resume", str(run), f"steps={steps}"])
    assert result.exit_code == 0, result.output


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tiny_set, tmp_path, reference):
    run = tmp_path / "run"
    proc = start_training(tiny_set, run, steps=100_000)
    deadline = time.monotonic() + 120
    # Kill once a checkpoint exists (step 5) and a few steps past it were logged.
    while proc.poll() is None and time.monotonic() < deadline:
        if (run / RESUME_FILE).exists() and any(step >= 7 for step, _ in losses(run)):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, (run.parent / "train.log").read_text()
    saved = torch.load(run / RESUME_FILE, weights_only=True)["step"]
    assert 5 <= saved < 20, saved  # killed mid-run: the resumed part below is not empty
    resume_cli(run, steps=20)
    # Deterministic mode: step for step the same losses, and the same weights, as without the kill.
    assert losses(run) == losses(reference)
    a, _ = load_model(reference / "model.safetensors")
    b, _ = load_model(run / "model.safetensors")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_sigkill_mid_save_keeps_the_previous_checkpoint(tiny_set, tmp_path, reference):
    run = tmp_path / "run"
    # Killed while renaming the second resume.pt (step 10): the step-10 model files are complete.
    proc = start_training(tiny_set, run, steps=15, env={fileio.KILL_HOOK_ENV: f"{RESUME_FILE}:2"})
    assert proc.wait(timeout=120) == -signal.SIGKILL, (run.parent / "train.log").read_text()
    leftovers = list(run.glob(".*.tmp"))
    assert [p.name.startswith(f".{RESUME_FILE}.") for p in leftovers] == [True]
    assert torch.load(run / RESUME_FILE, weights_only=True)["step"] == 5  # the old file, whole
    assert load_model(run / "model.safetensors")[1]["training"]["step"] == 10
    resume_cli(run, steps=15)  # from step 5, the checkpoint resume.pt names
    assert not list(run.glob(".*.tmp"))
    assert losses(run) == losses(reference)[:15]


def test_atomic_write_syncs_the_file_then_its_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    fileio.write_bytes(tmp_path / "a.bin", b"data")
    assert synced == ["file", "folder"] and (tmp_path / "a.bin").read_bytes() == b"data"


def test_truncated_metrics_line_is_tolerated(tmp_path):
    run = RunDir(tmp_path)
    run.log({"step": 1, "loss/total": 0.5})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "loss/to')  # a process killed mid-append
    assert run.metrics() == [{"step": 1, "loss/total": 0.5}]
    run.truncate_metrics(1)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss/total": 0.5}\n'
    (tmp_path / "metrics.jsonl").write_text('{"step": 1\n{"step": 2}\n')
    with pytest.raises(UnispError, match="line 1 is not JSON"):
        run.metrics()


def inject_nan(monkeypatch, calls: dict[int, str]) -> None:
    """Poison the generator's first term on the given (1-based) calls: ``"loss"`` makes it NaN;
    ``"gradient"`` keeps its value and makes its gradient NaN (+ sqrt(Ŷ − Ŷ): value 0, derivative inf · 0)."""
    original = Objective.generator_terms
    count = [0]

    def patched(self, fake, batch, step):
        terms, dbatch = original(self, fake, batch, step)
        count[0] += 1
        kind = calls.get(count[0])
        if kind is not None:
            name = next(iter(terms))
            terms[name] = terms[name] * float("nan") if kind == "loss" else terms[name] + torch.sqrt(fake - fake).sum()
        return terms, dbatch

    monkeypatch.setattr(Objective, "generator_terms", patched)


@pytest.mark.parametrize("workers", [0, 1])  # 1: the rollback restarts the one, persistent, worker's pass
def test_nan_steps_are_skipped_and_persistent_ones_roll_back(tiny_set, tmp_path, monkeypatch, caplog, workers):
    # Step 4: one NaN loss (skipped). Steps 15-17: NaN gradients three times in a row
    # (= nan_patience): back to the step-10 checkpoint with the learning rates × 0.25, and on.
    inject_nan(monkeypatch, {4: "loss", 15: "gradient", 16: "gradient", 17: "gradient"})
    run = tmp_path / "run"
    config = recipe(tiny_set, steps=25, ckpt_every=10, nan_patience=3, nan_lr_factor=0.25, **{"data.workers": workers})
    with caplog.at_level(logging.WARNING, logger="unisp.train"):
        summary = train(config, run)
    model, _ = load_model(run / "model.safetensors")
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())
    assert summary["skipped_steps"] == 4 and summary["rollbacks"] == 1 and summary["steps"] == 25
    assert any("rolling back to step 10" in r.getMessage() for r in caplog.records)
    state = torch.load(run / RESUME_FILE, weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.005 * 0.25)
    assert state["guard"]["lr_scale"] == 0.25 and state["guard"]["skipped_steps"] == 4
    records = RunDir(run).metrics()
    assert [r["step"] for r in records if "rollback" in r] == [10]
    steps = [r["step"] for r in records if "skipped_steps" in r and "rollback" not in r]
    assert steps == list(range(1, 26))  # the undone steps 11-17 were dropped from the log, then redone
    step4 = next(r for r in records if r["step"] == 4)
    assert step4["skipped_steps"] == 1 and "loss/total" not in step4


def test_persistent_nan_gives_up_after_max_rollbacks(tiny_set, tmp_path, monkeypatch):
    inject_nan(monkeypatch, dict.fromkeys(range(1, 1000), "loss"))
    with pytest.raises(TrainingDiverged, match="after 1 rollback"):
        train(recipe(tiny_set, steps=20, nan_patience=2, nan_max_rollbacks=1), tmp_path / "run")


class TwoDiscriminators:
    """The part of :class:`Objective` a discriminator update uses: two linear discriminators,
    the second of which gets an infinite gradient."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.discs = {"good": torch.nn.Linear(3, 1), "bad": torch.nn.Linear(3, 1)}
        self.criterion = self

    def discriminators(self):
        return self.discs

    def discriminator_step(self, batch):
        stats = {}
        for name, d in self.discs.items():
            loss = d(batch).square().mean()
            loss.backward()
            stats[f"{name}/loss"] = float(loss.detach())
        next(self.discs["bad"].parameters()).grad.fill_(float("inf"))
        return stats


def test_discriminator_nan_update_is_skipped():
    objective = TwoDiscriminators()
    opts = {k: torch.optim.Adam(d.parameters(), lr=0.1) for k, d in objective.discs.items()}
    before = {k: [p.detach().clone() for p in d.parameters()] for k, d in objective.discs.items()}
    guard = NonFiniteGuard(patience=3, factor=0.5, max_rollbacks=1)
    stats = discriminator_update(objective, torch.ones(2, 3), opts, clip=1.0, guard=guard, ctx=Distributed(), step=0)
    assert set(stats) == {"d/good/loss", "d/bad/loss"} and guard.skipped_d_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(before["bad"], objective.discs["bad"].parameters()))
    assert not any(torch.equal(a, b) for a, b in zip(before["good"], objective.discs["good"].parameters()))
    assert all(p.grad is None for p in objective.discs["bad"].parameters())


def test_disk_full_during_a_checkpoint(tiny_set, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_fsync = os.fsync
    full = [False]

    def fsync(fd):
        if full[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    with pytest.raises(OutputError, match="No space left on device") as error:
        train(recipe(tiny_set, steps=30, ckpt_every=10), run, progress=lambda step, record: full.__setitem__(0, step >= 15))
    assert "step_0000020" in str(error.value) and "\n" not in str(error.value)
    monkeypatch.setattr(fileio.os, "fsync", real_fsync)
    assert not list(run.rglob("*.tmp")) and not (run / "checkpoints" / "step_0000020.safetensors").exists()
    # The step-10 checkpoint is intact and resumable.
    assert load_model(run / "model.safetensors")[1]["training"]["step"] == 10
    assert torch.load(run / RESUME_FILE, weights_only=True)["step"] == 10
    resume_cli(run, steps=12)


def test_disk_full_in_the_metrics_log_leaves_it_whole(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    run.log({"step": 1})

    class FullFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def tell(self):
            return self.f.tell()

        def truncate(self, size):
            return self.f.truncate(size)

        def write(self, data):
            self.f.write(data[:5])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: FullFile(real_open(*a, **k)))
    with pytest.raises(OutputError, match="metrics.jsonl: cannot write"):
        run.log({"step": 2})
    monkeypatch.setattr("builtins.open", real_open)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n'  # the 5 bytes written were cut back


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permission bits do not bind root")
def test_unwritable_output_folder_is_one_line(tiny_set, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = CliRunner().invoke(app, ["train", "--out", str(locked / "run"), f"data.raw_dir={tiny_set / 'raw'}", *ARGS, "steps=2"])
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot create the run folder (Permission denied)" in result.output.strip().splitlines()[-1]


def test_unwritable_checkpoint_folder(tiny_set, tmp_path, monkeypatch):
    # What a read-only folder does to an atomic write, also where tests run as root: mkstemp fails.
    run = tmp_path / "run"
    real = fileio.tempfile.mkstemp
    locked = [False]

    def mkstemp(*args, **kwargs):
        if locked[0]:
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, **kwargs)

    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    with pytest.raises(OutputError, match="Read-only file system"):
        train(recipe(tiny_set, steps=20, ckpt_every=10), run, progress=lambda step, record: locked.__setitem__(0, step >= 12))
    assert torch.load(run / RESUME_FILE, weights_only=True)["step"] == 10
    assert not list(run.rglob("*.tmp"))


class Payload:
    """Unpickling this creates a file: what a crafted resume.pt would do with code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_crafted_resume_file_is_refused(tiny_set, tmp_path, writer):
    import pickle

    run = tmp_path / "run"
    train(recipe(tiny_set, steps=2, ckpt_every=2), run)
    marker = tmp_path / "pwned"
    evil = {"step": 2, "checkpoint": "step_0000002.safetensors", "optimizer": Payload(marker)}
    if writer == "pickle":
        (run / RESUME_FILE).write_bytes(pickle.dumps(evil))
    else:
        torch.save(evil, run / RESUME_FILE)
    result = CliRunner().invoke(app, ["train", "--resume", str(run), "steps=4"])
    assert result.exit_code == 2 and "cannot load resume state, refused" in result.output, result.output
    assert not marker.exists()
