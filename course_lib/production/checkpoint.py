"""Saving and loading models safely: a ``state_dict`` of tensors plus a JSON file naming the class and config.

The source module pickled whole modules and, once torch >= 2.6 refused them, reached for
``torch.load(..., weights_only=False)``, which executes whatever code the file carries
(docs/errata.md: ModelDeployment). Here the weights file holds tensors only and is read with
``weights_only=True``; the architecture is rebuilt from the JSON file, by a class looked up in the
model registry (:mod:`course_lib.models.registry`) and its stored ``config``. A tampered file is
refused, never run, and a class name outside the registry is refused too.

    save_checkpoint(model, "runs/lstm.pt")          # writes runs/lstm.pt and runs/lstm.pt.json
    model = load_checkpoint("runs/lstm.pt")          # the same class, config and weights
"""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

FORMAT = 2  # version of the JSON side file: {"format", "class", "config"}


def _config_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_checkpoint(model: nn.Module, path: str | Path, config: dict | None = None) -> Path:
    """Write ``path`` (the state_dict) and ``path.json`` (class name and config); returns ``path``.

    The config is ``model.config`` (every course_lib model keeps its constructor arguments); pass
    ``config`` only for a model of your own without one, and load it with ``build=``. Both files are
    written atomically (a crash never leaves half a checkpoint).
    """
    path = Path(path)
    if config is None:
        if not isinstance(getattr(model, "config", None), dict):
            raise TypeError(
                f"{type(model).__name__} has no .config dict: pass config=... (JSON values) and load the "
                "checkpoint with load_checkpoint(path, build=...)"
            )
        config = model.config
    meta = {"format": FORMAT, "class": type(model).__name__, "config": config}
    text = json.dumps(meta, indent=2, sort_keys=True)  # fails early on a non-JSON config
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, write in (
        (path, lambda f: torch.save(model.state_dict(), f)),
        (_config_path(path), lambda f: f.write(text.encode())),
    ):
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            write(tmp)
        os.replace(tmp.name, target)
    return path


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    build: Callable[[dict], nn.Module] | None = None,
) -> nn.Module:
    """Rebuild the model and load its weights with ``weights_only=True``, on ``map_location``.

    The class comes from the registry by the name stored in ``path.json`` and is called with the
    stored config; ``build(config)`` replaces that lookup for a model outside the registry.
    """
    path = Path(path)
    if not path.exists() or not _config_path(path).exists():
        raise FileNotFoundError(f"need both {path} and {_config_path(path)}")
    meta = json.loads(_config_path(path).read_text())
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{_config_path(path)} is not a course_lib checkpoint of format {FORMAT} "
            "(expected keys 'format', 'class', 'config'); save it again with save_checkpoint(model, path)"
        )
    if build is not None:
        model = build(meta["config"])
    else:
        from ..models.registry import model_class  # late import: the registry imports every model

        model = model_class(meta["class"])(**meta["config"])
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state)
    return model.to(map_location)
