"""Saving and loading models safely: a ``state_dict`` of tensors plus a JSON config.

The source module pickled whole modules and, once torch >= 2.6 refused them, reached for
``torch.load(..., weights_only=False)``, which executes whatever code the file carries. Here the
weights file holds tensors only and is read with ``weights_only=True``; the architecture is rebuilt
from the JSON config by a function you trust, so a tampered file is refused, never run.
"""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def _config_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_checkpoint(model: nn.Module, config: dict, path: str | Path) -> Path:
    """Write ``path`` (the state_dict) and ``path.json`` (the config); returns ``path``.

    ``config`` must be JSON-serialisable: it is what ``build`` receives in :func:`load_checkpoint`.
    Both files are written atomically.
    """
    path = Path(path)
    text = json.dumps(config, indent=2, sort_keys=True)  # fails early on a non-JSON config
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, write in ((path, lambda f: torch.save(model.state_dict(), f)),
                          (_config_path(path), lambda f: f.write(text.encode()))):
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            write(tmp)
        os.replace(tmp.name, target)
    return path


def load_checkpoint(
    path: str | Path, build: Callable[[dict], nn.Module], map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild the model with ``build(config)`` and load its weights with ``weights_only=True``."""
    path = Path(path)
    if not path.exists() or not _config_path(path).exists():
        raise FileNotFoundError(f"need both {path} and {_config_path(path)}")
    config = json.loads(_config_path(path).read_text())
    model = build(config)
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.to(map_location)
