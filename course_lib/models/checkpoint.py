"""One format on disk for a model and its config: a directory of safetensors weights and a JSON file.

    save_checkpoint(model, "runs/lstm")   # writes runs/lstm/model.safetensors and runs/lstm/checkpoint.json
    model = load_checkpoint("runs/lstm")  # the same class, config and weights

``model.safetensors`` holds the ``state_dict``, tensors and nothing else: reading it runs no code.
``checkpoint.json`` holds ``{"format", "class", "config", "weights_sha256"}`` and any metadata of the
writer (the DDP trainer's history, the Trainer's best epoch). The model is rebuilt from the JSON file,
by a class looked up in the catalogue (:func:`course_lib.models.registry.model_class`) and its stored
``config``; a class outside the catalogue is refused, and so is a weights file whose SHA-256 is not the
one recorded (changed, or from another save). Everything that writes a model uses this module: the
Trainer's best state (``checkpoint_path=``), DDP's rank 0, and the bundle
(:mod:`course_lib.production.bundle`, this checkpoint plus the task manifest).

The source module pickled whole modules and, once torch >= 2.6 refused them, reached for
``torch.load(..., weights_only=False)``, which executes whatever code the file carries
(docs/errata.md: ModelDeployment). The earlier course format (format 2: a ``torch.save`` state dict
``path`` beside ``path.json``) is not loaded: :func:`load_checkpoint` names the file and
:func:`convert_checkpoint` rewrites it once in this format (reading it with ``weights_only=True``).
"""

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = 3  # version of checkpoint.json; 2 was a torch.save file beside path.json
WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
_KEYS = ("format", "class", "config", "weights_sha256")


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted or read: old format, changed files, not safetensors."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(
    model: nn.Module, path: str | Path, config: dict | None = None, metadata: dict | None = None
) -> Path:
    """Write the directory ``path`` (``model.safetensors`` and ``checkpoint.json``); returns ``path``.

    The config is ``model.config`` (every course_lib model keeps its constructor arguments); pass
    ``config`` only for a model of your own without one, and load it with ``build=``. ``metadata`` (JSON)
    is stored beside the four keys of the format. Each file is replaced atomically, the weights first:
    a crash between the two leaves a pair whose hash does not match, which loading refuses.
    """
    path = Path(path)
    if config is None:
        if not isinstance(getattr(model, "config", None), dict):
            raise TypeError(
                f"{type(model).__name__} has no .config dict: pass config=... (JSON values) and load the "
                "checkpoint with load_checkpoint(path, build=...)"
            )
        config = model.config
    clash = set(metadata or {}) & set(_KEYS)
    if clash:
        raise ValueError(f"metadata may not use the format's own keys {sorted(clash)}")
    meta = {"format": FORMAT, "class": type(model).__name__, "config": config, **(metadata or {})}
    json.dumps(meta)  # fails early, before any file is written, on a value that is not JSON
    # copies on the CPU: safetensors refuses tensors that share memory (tied or viewed weights)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path) as tmp:
        save_file(state, Path(tmp) / WEIGHTS_FILE)
        meta["weights_sha256"] = _sha256(Path(tmp) / WEIGHTS_FILE)
        (Path(tmp) / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        for file in (WEIGHTS_FILE, META_FILE):
            os.replace(Path(tmp) / file, path / file)
    return path


def _old_format(path: Path) -> str:
    """What an earlier course checkpoint at ``path`` is, and how to convert it (for the error)."""
    if path.is_file():
        side = path.with_name(path.name + ".json")
        if side.is_file():
            what = (
                f"{path} with {side.name} is a course_lib checkpoint of format 2 (torch.save pickle + JSON)"
            )
            fix = "convert_checkpoint(old, new_dir)"
        else:
            what = f"{path} is a file, not a checkpoint directory (the Trainer wrote a bare torch.save state dict)"
            fix = "convert_checkpoint(old, new_dir, model=...)"
    else:
        what = f"{path / META_FILE} has no 'format' key: DDP's checkpoint before format 3"
        fix = "convert_checkpoint(old, new_dir)"
    return (
        f"{what}; this loader reads format {FORMAT} only (a directory with {WEIGHTS_FILE} and {META_FILE}). "
        f"Convert it once with course_lib.models.checkpoint.{fix}, which reads the tensors with "
        "weights_only=True, then load the new directory"
    )


def read_meta(path: str | Path) -> dict:
    """The checked ``checkpoint.json`` of the checkpoint directory ``path`` (class, config, metadata)."""
    path = Path(path)
    if path.is_file():
        raise CheckpointError(_old_format(path))
    if not (path / WEIGHTS_FILE).is_file() or not (path / META_FILE).is_file():
        raise FileNotFoundError(
            f"{path} is not a checkpoint: need both {path / WEIGHTS_FILE} and {path / META_FILE}"
        )
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path / META_FILE} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path / META_FILE} is not a course_lib checkpoint (expected keys {list(_KEYS)})"
        )
    if "format" not in meta and {"class", "config"} <= set(meta):
        raise CheckpointError(_old_format(path))
    missing = [k for k in _KEYS if k not in meta]
    if meta.get("format") != FORMAT or missing:
        raise CheckpointError(
            f"{path / META_FILE} is not a course_lib checkpoint of format {FORMAT} (expected keys "
            f"{list(_KEYS)}, missing {missing}); save the model again with save_checkpoint(model, path)"
        )
    return meta


def _weights_shapes(path: Path, meta: dict) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in ``path/model.safetensors``, read from its header after the hash check.

    The safetensors header (a JSON table of names, dtypes, shapes and offsets) is read without loading
    any tensor, so a config can be checked against it before a model is built.
    """
    if _sha256(path / WEIGHTS_FILE) != meta["weights_sha256"]:
        raise CheckpointError(
            f"{path / WEIGHTS_FILE} does not match {META_FILE} (its SHA-256 differs): the file was changed "
            "after saving, or the two files come from different saves; save the model again"
        )
    try:
        with safe_open(path / WEIGHTS_FILE, framework="pt") as file:  # the header only: tensors stay on disk
            return {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}  # noqa: SIM118
    except SafetensorError as err:
        raise CheckpointError(
            f"{path / WEIGHTS_FILE} is not a safetensors file ({err}); pickled weights are never loaded"
        ) from err


def verify_checkpoint(path: str | Path) -> dict:
    """The ``checkpoint.json`` of the directory ``path`` once the weights match its hash and are a readable
    safetensors file (its header: no tensor is loaded); raises :class:`CheckpointError` otherwise."""
    meta = read_meta(path)
    _weights_shapes(Path(path), meta)
    return meta


def _integers(value) -> list[int]:
    """Every integer in a JSON value (booleans excluded), nested lists and objects included."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list | dict):
        return [i for v in (value.values() if isinstance(value, dict) else value) for i in _integers(v)]
    return []


def _check_config(path: Path, name: str, build: Callable[[dict], nn.Module], config, shapes: dict) -> None:
    """Refuse a config that does not describe the stored weights, before any real allocation.

    Two steps. Every integer of the config (a width, a depth, a kernel size) is at most the number of
    stored weights, which the safetensors header gives: a forged ``hidden_size=10**6`` is refused
    without building anything. Then the model is built on PyTorch's ``meta`` device (shapes, no memory)
    and its ``state_dict`` must have exactly the stored names and shapes.
    """
    where = f"{path / META_FILE}: config of {name}"
    if not isinstance(config, dict):
        raise CheckpointError(f"{where} must be a JSON object of constructor arguments, got {config!r}")
    n_weights = sum(math.prod(shape) for shape in shapes.values())
    for key, value in config.items():
        too_big = [i for i in _integers(value) if abs(i) > n_weights]
        if too_big:
            raise CheckpointError(
                f"{where}: {key}={value!r} exceeds the {n_weights} numbers stored in {WEIGHTS_FILE}; no model "
                "this size fits those weights (the config was edited, or belongs to another save)"
            )
    try:
        with torch.device("meta"):  # shapes only: a forged size allocates nothing here
            expected = {k: tuple(v.shape) for k, v in build(config).state_dict().items()}
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{where} does not build the model: {type(err).__name__}: {err}") from err
    if expected != shapes:
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected))
        wrong = [
            f"{k}: {shapes[k]} stored, {expected[k]} built"
            for k in expected
            if shapes.get(k, expected[k]) != expected[k]
        ]
        raise CheckpointError(
            f"{path / WEIGHTS_FILE} does not fit {name}({config}): missing tensors {missing[:3]}, "
            f"unexpected tensors {extra[:3]}, wrong shapes {wrong[:3]}"
        )


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    build: Callable[[dict], nn.Module] | None = None,
) -> nn.Module:
    """Rebuild the model of the checkpoint directory ``path`` and load its weights onto ``map_location``.

    The class comes from the catalogue by the name stored in ``checkpoint.json`` and is called with the
    stored config; ``build(config)`` replaces that lookup for a model outside the catalogue. Before the
    model is built for real, the weights' hash is checked and the config is checked against the
    weights' header (names, shapes, sizes: see :func:`_check_config`), so an edited file fails with a
    :class:`CheckpointError` naming what differs, not with an allocation or a ``load_state_dict`` error.
    """
    path, meta = Path(path), read_meta(path)
    if build is None:
        from .registry import model_class  # late import: the registry imports every model

        cls = model_class(meta["class"])

        def build(config: dict) -> nn.Module:
            return cls(**config)

    shapes = _weights_shapes(path, meta)
    _check_config(path, str(meta["class"]), build, meta["config"], shapes)
    model = build(meta["config"])
    model.load_state_dict(load_file(path / WEIGHTS_FILE, device=str(torch.device(map_location))))
    return model.to(map_location)


def convert_checkpoint(old: str | Path, new: str | Path, model: nn.Module | None = None) -> Path:
    """Rewrite an earlier course checkpoint ``old`` as the checkpoint directory ``new``; returns ``new``.

    Format 2 (``old`` a ``torch.save`` state dict beside ``old.json``) and the Trainer's bare state dict
    are read with ``torch.load(weights_only=True)``: tensors only, no code runs. DDP's directory before
    format 3 (``model.safetensors`` + ``checkpoint.json`` without ``format``) keeps its metadata. The
    class and config come from the old JSON file; a bare state dict has none: pass the ``model`` (built
    with the training config) to load it into.
    """
    old = Path(old)
    if old.is_dir():
        meta = json.loads((old / META_FILE).read_text())
        state = load_file(old / WEIGHTS_FILE)
    else:
        side = old.with_name(old.name + ".json")
        meta = json.loads(side.read_text()) if side.is_file() else {}
        state = torch.load(old, map_location="cpu", weights_only=True)
    if model is None:
        if "class" not in meta:
            raise ValueError(f"{old} names no model class: pass model=... (built with its training config)")
        from .registry import model_class  # late import: the registry imports every model

        model = model_class(meta["class"])(**meta["config"])
    model.load_state_dict(state)
    extra = {k: v for k, v in meta.items() if k not in _KEYS}
    return save_checkpoint(model, new, config=meta.get("config"), metadata=extra)
