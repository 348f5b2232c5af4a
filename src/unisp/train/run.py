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
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pickle
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from unisp import __version__
from unisp.config import to_dict
from unisp.errors import OutputError, UnispError
from unisp.fileio import write_bytes, write_text
from unisp.models.base import Generator
from unisp.models.checkpoint import load_model, save_model

CONFIG_FILE = "config.yaml"
RESUME_FILE = "resume.pt"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
GRADING_FILE = "grading.json"

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

    def start(self, config: Any, device: str, command: str = "") -> None:
        """Write the recipe and run information (a fresh run)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot create the run folder ({e.strerror or e})") from None
        write_text(self.path / CONFIG_FILE, yaml.safe_dump(to_dict(config), sort_keys=False))
        info = {
            "git": git_hash(),
            "unisp_version": __version__,
            "torch_version": torch.__version__,
            "device": device,
            "command": command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_text(self.path / "run.json", json.dumps(info, indent=2) + "\n")

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
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
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

    def save(self, model: Generator, name: str, step: int, state: dict[str, Any], training: dict[str, Any]) -> Path:
        """Write the step's model file, the latest model and the resume state (each atomically).

        ``resume.pt`` goes last and names its checkpoint: a process killed between the files
        leaves the previous ``resume.pt``, which still names the previous (complete) checkpoint.
        """
        meta = {"training": {**training, "step": step}}
        ckpt = self.path / "checkpoints" / f"step_{step:07d}.safetensors"
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
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # a pickle that would run code (or one torch cannot parse)
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            what = f"it asks to run {found.group(1)}" if found else "not plain tensors and data"
            raise UnispError(f"{path}: cannot load resume state, refused: {what} (nothing was run)") from None
        except Exception as e:  # a truncated or foreign file
            raise UnispError(f"{path}: cannot load resume state ({' '.join(str(e).split())[:200]})") from None
        if not isinstance(state, dict) or not isinstance(state.get("checkpoint"), str) or "step" not in state:
            raise UnispError(f"{path}: not a unisp resume file (no step and checkpoint entries)")
        model, header = load_model(self.path / "checkpoints" / Path(state["checkpoint"]).name)
        return model, header, state

    def remove_temporaries(self) -> list[Path]:
        """Delete temporary files a killed process left behind (``.NAME.*.tmp`` of an interrupted atomic write)."""
        stale = [p for folder in (self.path, self.path / "checkpoints") if folder.is_dir() for p in folder.glob(".*.tmp")]
        for p in stale:
            p.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted write", p)
        return stale

    def config_path(self) -> Path:
        path = self.path / CONFIG_FILE
        if not path.exists():
            raise UnispError(f"{self.path}: not a run folder (no {CONFIG_FILE})")
        return path
