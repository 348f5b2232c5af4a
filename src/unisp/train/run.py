"""The run folder: recipe copy, metrics log, checkpoints and exact resume state.

A run folder holds::

    config.yaml          the recipe as run (with every default filled in)
    run.json             git hash, unisp version, command, device, start time
    metrics.jsonl        one JSON object per logged step / validation
    checkpoints/step_N.safetensors   model files (safetensors + JSON header, see unisp.models.checkpoint)
    model.safetensors    the latest model
    resume.pt            optimiser, step, epoch and RNG state for ``--resume`` (loaded with weights_only=True)
    summary.json         the final summary
    grading.json         the lightness and chroma curves of the ``graded`` term, when it is on

A new run starts only in a missing or empty folder (or with ``--overwrite``, which first removes
a previous run's files); ``--resume`` may change only :data:`RESUMABLE_KEYS` of the recipe.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pickle
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from unisp import __version__
from unisp.config import load_config, to_dict
from unisp.errors import ConfigError, OutputError, UnispError
from unisp.fileio import read_input_bytes, write_bytes, write_text
from unisp.models.base import Generator
from unisp.models.checkpoint import load_model, save_model

# The names of everything in a run folder, in one place (the loop, `unisp report` and `unisp select` use these).
#: The recipe as the run uses it (every default filled in).
CONFIG_FILE = "config.yaml"
#: Optimiser moments, step, RNG states: what ``--resume`` needs beyond the weights.
RESUME_FILE = "resume.pt"
#: The latest weights with their header (the file users give to process, export, eval).
MODEL_FILE = "model.safetensors"
#: One JSON record per logged step and per validation.
METRICS_FILE = "metrics.jsonl"
#: Written when a run finishes: final step, validation, wall time.
SUMMARY_FILE = "summary.json"
#: The colour-grading curves fitted to the RGB photos (recipes with a graded loss).
GRADING_FILE = "grading.json"
#: Git hash, device, command, start time, versions.
RUN_INFO_FILE = "run.json"
#: Every saved checkpoint, ``step_NNNNNNN.safetensors``.
CHECKPOINTS_DIR = "checkpoints"
#: TensorBoard event files.
TENSORBOARD_DIR = "tb"
#: What ``unisp report RUN`` writes into the run folder by default.
REPORT_FILE = "report.html"
#: What ``unisp select RUN`` writes into the run folder by default.
SELECT_FILE = "select.json"
#: Everything a run writes into its folder, and what ``unisp report`` and ``unisp select`` write
#: there by default: the entries ``--overwrite`` removes before a new run starts (anything else
#: in the folder is the user's, and is left alone).
RUN_ENTRIES = (
    CONFIG_FILE, RUN_INFO_FILE, METRICS_FILE, CHECKPOINTS_DIR, MODEL_FILE, RESUME_FILE, SUMMARY_FILE, GRADING_FILE,
    TENSORBOARD_DIR, REPORT_FILE, SELECT_FILE,
)
#: Largest ``resume.pt`` read: it holds the optimiser moments of the generator and of the
#: discriminators, tens to hundreds of MB for the shipped recipes; anything larger is not one
#: (and a FIFO or a device in its place is refused before it is opened).
MAX_RESUME_BYTES = 8 * 2**30
#: Largest ``metrics.jsonl`` read: a record is under 1 KB, so a million logged steps fit.
MAX_METRICS_BYTES = 2**30
#: Keys a resumed run may change: how long it goes on, how often it logs, validates and saves,
#: where and how it computes, and how its NaN guard reacts. Every other key fixes what is trained
#: (the model, the data and patches, the losses, the optimisers, the seed): with another value
#: the run would not continue but become a different one, which is what ``init=`` is for.
RESUMABLE_KEYS = frozenset({
    "steps", "log_every", "val_every", "ckpt_every", "image_every", "tensorboard", "device", "amp",
    "deterministic", "data.workers", "data.val_max_images", "nan_patience", "nan_lr_factor", "nan_max_rollbacks",
})
#: Entries named in a "not empty" error.
_LISTED_ENTRIES = 4

log = logging.getLogger(__name__)


def git_hash() -> str:
    """The source tree's git commit (with ``-dirty`` when modified), or ``unknown``."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


class RunDir:
    """Everything a training run writes, in one folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def check_new(self, overwrite: bool) -> None:
        """Refuse to start a new run in a folder that holds anything, unless ``overwrite`` is given.

        Raises :class:`OutputError` when a file takes the folder's place, :class:`UnispError` when
        the folder is not empty (saying whether it holds a run, to ``--resume`` or ``--overwrite``).
        """
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise OutputError(f"{self.path}: exists and is not a folder (the run folder goes there)")
        try:
            entries = sorted(p.name for p in self.path.iterdir())
        except OSError as e:
            raise OutputError(f"{self.path}: cannot list the run folder ({e.strerror or e})") from None
        if not entries or overwrite:
            return
        listed = ", ".join(entries[:_LISTED_ENTRIES]) + (", …" if len(entries) > _LISTED_ENTRIES else "")
        if CONFIG_FILE in entries:
            raise UnispError(
                f"{self.path}: holds a run already ({listed}); continue it with --resume {self.path}, "
                "or start it over with --overwrite (its files are replaced)"
            )
        raise UnispError(
            f"{self.path}: the run folder is not empty ({listed}); choose another folder, or pass --overwrite "
            "to train into it (only a previous run's files are removed)"
        )

    def remove_previous(self) -> None:
        """Delete the entries of :data:`RUN_ENTRIES` (a previous run's files) and interrupted writes, and log which."""
        removed = []
        for name in RUN_ENTRIES:
            path = self.path / name
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
                else:
                    continue
            except OSError as e:
                raise OutputError(f"{path}: cannot remove the previous run's file ({e.strerror or e})") from None
            removed.append(name)
        self.remove_temporaries()
        if removed:
            log.info("--overwrite: removed the previous run's %s from %s", ", ".join(removed), self.path)

    def start(self, config: Any, device: str, command: str = "") -> None:
        """Create the folder and write the recipe and run information (a fresh run)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot create the run folder ({e.strerror or e})") from None
        self.save_config(config)
        info = {
            "git": git_hash(),
            "unisp_version": __version__,
            "torch_version": torch.__version__,
            "device": device,
            "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_text(self.path / RUN_INFO_FILE, json.dumps(info, indent=2) + "\n")

    def save_config(self, config: Any) -> None:
        """Write the recipe as run (every default filled in) to ``config.yaml``."""
        write_text(self.path / CONFIG_FILE, yaml.safe_dump(to_dict(config), sort_keys=False))

    def resume_changes(self, config: Any) -> dict[str, tuple[Any, Any]]:
        """``{key: (saved, new)}`` for every key where ``config`` differs from the run's ``config.yaml``.

        Raises :class:`ConfigError` naming the first changed key outside :data:`RESUMABLE_KEYS`.
        """
        saved = load_config(type(config), self.config_path())
        changes = _changed_keys(to_dict(saved), to_dict(config))
        for key, (old, new) in changes.items():
            if key not in RESUMABLE_KEYS:
                raise ConfigError(
                    f"{self.path}: --resume cannot change {key!r} (the run has {old!r}, asked for {new!r}); "
                    f"a resumed run may change only {', '.join(sorted(RESUMABLE_KEYS))}. To train its model "
                    f"with other settings, start a new run with init={self.path / MODEL_FILE}"
                )
        return changes

    def save_grading(self, curves: dict[str, Any]) -> None:
        """Write the ``graded`` term's curves (:meth:`unisp.isp.grading.Grading.to_dict`) to ``grading.json``."""
        write_text(self.path / GRADING_FILE, json.dumps(curves) + "\n")

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl``.

        Appending is not atomic: a process killed mid-write can leave a truncated last line,
        which :meth:`metrics` ignores and a resume removes (:meth:`truncate_metrics` rewrites
        the file atomically). A failed write (disk full) is cut back to the previous end of the
        file and raised as :class:`OutputError`.
        """
        path = self.path / METRICS_FILE
        line = (json.dumps(record) + "\n").encode("utf-8")
        try:
            with open(path, "ab") as f:
                end = f.tell()
                try:
                    f.write(line)
                    f.flush()
                except OSError:
                    with contextlib.suppress(OSError):
                        f.truncate(end)
                    raise
        except OSError as e:
            raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None

    def metrics(self) -> list[dict[str, Any]]:
        """Every record logged so far (a truncated last line, left by a killed process, is skipped)."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return []
        text = read_input_bytes(path, limit=MAX_METRICS_BYTES, what="metrics log").decode("utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i < len(lines) - 1:
                    raise UnispError(f"{path}: line {i + 1} is not JSON (only the last line may be cut short)") from None
                log.warning("%s: ignoring its truncated last line (the process was killed while writing it)", path)
        return records

    def truncate_metrics(self, step: int) -> None:
        """Drop records after ``step`` (a resumed run repeats the steps after its last checkpoint)."""
        kept = [r for r in self.metrics() if r.get("step", 0) <= step]
        write_text(self.path / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept))

    def save(
        self, model: Generator, name: str, step: int, state: dict[str, Any], training: dict[str, Any],
        raw_input: dict[str, Any] | None = None,
    ) -> Path:
        """Write the step's model file, the latest model and the resume state (each atomically).

        ``raw_input`` (:meth:`unisp.raw.options.RawOptions.to_dict`: the RAW values the run reads
        its files with) goes into the model files' header when it holds any. ``resume.pt`` goes
        last and names its checkpoint: a process killed between the files leaves the previous
        ``resume.pt``, which still names the previous (complete) checkpoint.
        """
        meta = {"training": {**training, "step": step}, **({"raw_input": raw_input} if raw_input else {})}
        ckpt = self.path / CHECKPOINTS_DIR / f"step_{step:07d}.safetensors"
        save_model(ckpt, model, name=name, meta=meta)
        write_bytes(self.path / MODEL_FILE, ckpt.read_bytes())  # the same file: serialise and check once
        buffer = io.BytesIO()
        torch.save({**state, "step": step, "checkpoint": ckpt.name}, buffer)
        write_bytes(self.path / RESUME_FILE, buffer.getvalue())
        return ckpt

    def load_resume(self) -> tuple[Generator, dict[str, Any], dict[str, Any]]:
        """``(model, header, state)`` of the last checkpoint, loading nothing that can run code."""
        path = self.path / RESUME_FILE
        if not path.exists():
            raise UnispError(f"{self.path}: no {RESUME_FILE} to resume from (was a checkpoint saved?)")
        data = read_input_bytes(path, limit=MAX_RESUME_BYTES, what="resume file")
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # a pickle that would run code (or one torch cannot parse)
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            what = f"it asks to run {found.group(1)}" if found else "not plain tensors and data"
            raise UnispError(f"{path}: cannot load resume state, refused: {what} (nothing was run)") from None
        except Exception as e:  # a truncated or foreign file
            raise UnispError(f"{path}: cannot load resume state ({' '.join(str(e).split())[:200]})") from None
        if not isinstance(state, dict) or not isinstance(state.get("checkpoint"), str) or "step" not in state:
            raise UnispError(f"{path}: not a unisp resume file (no step and checkpoint entries)")
        model, header = load_model(self.path / CHECKPOINTS_DIR / Path(state["checkpoint"]).name)
        return model, header, state

    def remove_temporaries(self) -> list[Path]:
        """Delete temporary files a killed process left behind (``.NAME.*.tmp`` of an interrupted atomic write)."""
        stale = [p for folder in (self.path, self.path / CHECKPOINTS_DIR) if folder.is_dir() for p in folder.glob(".*.tmp")]
        for p in stale:
            p.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted write", p)
        return stale

    def config_path(self) -> Path:
        path = self.path / CONFIG_FILE
        if not path.exists():
            raise UnispError(f"{self.path}: not a run folder (no {CONFIG_FILE})")
        return path


def _changed_keys(old: dict, new: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every value that differs between two nested config dicts."""
    changes: dict[str, tuple[Any, Any]] = {}
    for key in old.keys() | new.keys():
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes.update(_changed_keys(a, b, f"{prefix}{key}."))
        elif a != b:
            changes[f"{prefix}{key}"] = (a, b)
    return dict(sorted(changes.items()))
