"""The run folder: recipe copy, metrics log, checkpoints and exact resume state.

A run folder holds::

    config.yaml          the recipe as run (with every default filled in)
    run.json             git hash, unisp version, command, device, start time
    metrics.jsonl        one JSON object per logged step / validation
    checkpoints/step_N.safetensors   model files (safetensors + JSON header, see unisp.models.checkpoint)
    model.safetensors    the latest model
    resume.pt            optimiser, step, epoch and RNG state for ``--resume`` (loaded with weights_only=True)
    summary.json         the final summary
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from unisp import __version__
from unisp.config import to_dict
from unisp.errors import UnispError
from unisp.fileio import write_bytes, write_text
from unisp.models.base import Generator
from unisp.models.checkpoint import load_model, save_model

CONFIG_FILE = "config.yaml"
RESUME_FILE = "resume.pt"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


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
        self.path.mkdir(parents=True, exist_ok=True)
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

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl`` (a line is either whole or absent)."""
        with open(self.path / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """Every record logged so far."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_metrics(self, step: int) -> None:
        """Drop records after ``step`` (a resumed run repeats the steps after its last checkpoint)."""
        kept = [r for r in self.metrics() if r.get("step", 0) <= step]
        write_text(self.path / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept))

    def save(self, model: Generator, name: str, step: int, state: dict[str, Any], training: dict[str, Any]) -> Path:
        """Write the step's model file, the latest model and the resume state (each atomically)."""
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
        except Exception as e:  # a truncated or foreign file
            raise UnispError(f"{path}: cannot load resume state ({' '.join(str(e).split())[:200]})") from None
        model, header = load_model(self.path / "checkpoints" / state["checkpoint"])
        return model, header, state

    def config_path(self) -> Path:
        path = self.path / CONFIG_FILE
        if not path.exists():
            raise UnispError(f"{self.path}: not a run folder (no {CONFIG_FILE})")
        return path
