"""Data-parallel training with ``torch.distributed``: DistributedDataParallel, launched by ``torchrun``.

Each of the ``W`` processes (ranks) holds a full copy of the model and a 1/W shard of every epoch
(:class:`~torch.utils.data.distributed.DistributedSampler`). After ``backward`` DDP all-reduces the
gradients, averaging them, so with equal shards each rank steps with the gradient of the *whole*
batch of ``W * batch_size`` samples: W ranks equal one process on the full batch, up to round-off,
and the ranks' parameters stay identical (both are checked by the tests). The model, the loss
(:func:`course_lib.losses.mse_loss`), AdamW and gradient clipping are those of the Trainer.

Run, on CPU with the gloo backend (two processes on this machine)::

    python -m torch.distributed.run --nproc-per-node 2 -m course_lib.production.distributed \\
        --data train.npz --model FinancialGRU --config '{"input_size": 4, "hidden_size": 8}' --out ckpt/

``data.npz`` holds ``X`` (N, L, C) and ``y`` (N, n_h), optionally ``X_val`` and ``y_val``. ``--model``
is a class of the catalogue (:mod:`course_lib.models.registry`). Only rank 0 writes, after every epoch:
``--out`` is a checkpoint (:mod:`course_lib.models.checkpoint`, the one on-disk format), whose
``checkpoint.json`` also holds the world size, the samples per rank and the history (epoch, losses and
the largest parameter difference between ranks, measured with an all-gather). ``load_checkpoint(out)``
gives the trained model.

Several GPUs, one node: ``--backend nccl`` and ``--nproc-per-node <GPUs>``; each rank uses
``cuda:<LOCAL_RANK>``. Several nodes: start the same command on every node with
``--nnodes N --rdzv-backend c10d --rdzv-endpoint host:port --rdzv-id job42`` (one rendezvous
address reachable from all nodes); torchrun assigns the ranks. Nothing in the script changes.

Pitfall (DistributedSampler pads): when N is not a multiple of W, the sampler *repeats* the first
samples so every rank gets ``ceil(N / W)``: those samples count twice in the epoch's gradient, and
an evaluation run through the sampler scores duplicates. ``drop_last=True`` drops the remainder
instead; evaluate on one rank (or on exact shards), never through a padding sampler.
"""

import argparse
import json
import os
import signal
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from .. import set_seed
from ..losses import mse_loss
from ..models.checkpoint import CheckpointError, save_checkpoint, verify_checkpoint
from ..models.registry import model_class


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, grad_clip: float | None
) -> torch.Tensor:
    """One optimiser step of the Trainer's recipe (MSE, clipping); DDP averages the gradients in backward."""
    loss = mse_loss(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss.detach()


def _max_rank_difference(model: nn.Module) -> float:
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return max(float((g - gathered[0]).abs().max()) for g in gathered)


def run(args: argparse.Namespace) -> None:
    """The body of one rank (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    dist.init_process_group(backend=args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = (
        torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}")
        if args.backend == "nccl"
        else torch.device("cpu")
    )
    try:
        torch.set_num_threads(1)
        data = np.load(args.data)
        dataset = TensorDataset(torch.from_numpy(data["X"]).float(), torch.from_numpy(data["y"]).float())
        config = json.loads(args.config)
        set_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        model = DistributedDataParallel(model_class(args.model)(**config).to(device))
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
        sampler = DistributedSampler(
            dataset,
            num_replicas=world,
            rank=rank,
            shuffle=not args.no_shuffle,
            seed=args.seed,
            drop_last=args.drop_last,
        )
        loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
        history = []
        for epoch in range(args.epochs):
            # a new shuffle each epoch; without it every epoch repeats epoch 0's order
            sampler.set_epoch(epoch)
            model.train()
            total, count = torch.zeros((), device=device), torch.zeros((), device=device)
            for step, (x, y) in enumerate(loader):
                if args.max_steps is not None and step >= args.max_steps:
                    break
                loss = train_step(model, opt, x.to(device), y.to(device), args.grad_clip)
                total += loss * len(y)
                count += len(y)
            dist.all_reduce(total)
            dist.all_reduce(count)
            entry = {"epoch": epoch + 1, "train_loss": float(total / count)}
            if "X_val" in data.files:
                model.eval()
                with torch.no_grad():  # every rank scores the whole validation set: no padding
                    pred = model.module(torch.from_numpy(data["X_val"]).float().to(device))
                    entry["val_loss"] = float(
                        mse_loss(pred, torch.from_numpy(data["y_val"]).float().to(device))
                    )
            entry["max_rank_difference"] = _max_rank_difference(model.module)
            history.append(entry)
            if rank == 0:  # one writer: the ranks hold the same weights
                meta = {
                    "world_size": world,
                    "history": history,
                    "samples_per_rank": len(sampler),
                    "run_id": args.run_id,
                }
                save_checkpoint(model.module, args.out, metadata=meta)
            dist.barrier()
        # Free DDP's reducer (it holds gloo work objects) and wait for every rank before the group goes:
        # a rank that tears down gloo while another still talks to it aborts ("terminate called ...").
        del model, opt
        dist.barrier()
    finally:
        dist.destroy_process_group()


def launch(
    data: str | Path,
    model: str,
    config: dict,
    out: str | Path,
    nproc: int = 2,
    timeout: float = 300,
    **options,
) -> dict:
    """Run this module under torchrun (``--standalone``: one node, a free rendezvous port); return rank 0's
    ``checkpoint.json`` (``load_checkpoint(out)`` gives the model). ``options`` are the command-line flags,
    e.g. ``epochs=2, batch_size=64``.

    Success is judged by the result, not by torchrun's exit code or its messages: the run is done when
    ``out`` holds a checkpoint of *this* run (a fresh ``run_id``) with every epoch in its history and
    weights that match their hash. A run that exits with an error after writing that checkpoint (gloo on
    a loaded CPU sometimes aborts a rank at teardown) is accepted, with a warning; a run whose final
    checkpoint is missing or incomplete is started once more, with a warning, and raises if it fails
    again.
    """
    import sys

    model_class(model)(**config)  # an unknown class or a bad config fails here, before any process starts
    with np.load(data) as arrays:
        if not {"X", "y"} <= set(arrays.files):
            raise ValueError(f"{data} must hold arrays X and y, it holds {arrays.files}")
    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "OMP_NUM_THREADS": "1",
    }
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            flags += [flag, str(value)]
    run_id = uuid.uuid4().hex
    argv = [
        "--data", str(Path(data).resolve()), "--model", model, "--config", json.dumps(config),
        "--out", str(Path(out).resolve()), "--run-id", run_id, *flags,
    ]  # fmt: skip
    try:
        epochs = parse_args(argv).epochs  # the workers' own parser: a bad flag fails here, not in torchrun
    except SystemExit:
        raise ValueError(f"options {options} are not flags of course_lib.production.distributed") from None
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", "course_lib.production.distributed", *argv,
    ]  # fmt: skip
    for attempt in (1, 2):
        returncode, stderr = _run_torchrun(command, env, timeout)
        problem = _incomplete(out, run_id, epochs)
        if problem is None or attempt == 2:
            break
        warnings.warn(
            f"torchrun exited with code {returncode} and the final checkpoint is incomplete ({problem}); "
            "running it once more",
            stacklevel=2,
        )
    if problem is not None:
        raise RuntimeError(
            f"torchrun exited with code {returncode} and the final checkpoint is incomplete ({problem}):\n"
            f"{stderr[-8000:]}"
        )
    if returncode != 0:
        warnings.warn(
            f"torchrun exited with code {returncode} after writing the complete final checkpoint ({epochs} "
            f"epochs, hash checked); it is used. The end of stderr: {stderr[-500:]}",
            stacklevel=2,
        )
    return verify_checkpoint(out)


def _incomplete(out: str | Path, run_id: str, epochs: int) -> str | None:
    """What is wrong with ``out`` as the final checkpoint of the run ``run_id`` of ``epochs`` epochs, or None."""
    try:
        meta = verify_checkpoint(out)
    except (FileNotFoundError, CheckpointError) as err:
        return str(err)
    if meta.get("run_id") != run_id:
        return f"{out} was written by another run ({meta.get('run_id')}), not by this one"
    if len(meta.get("history", [])) != epochs:
        return f"{out} holds {len(meta.get('history', []))} of {epochs} epochs"
    return None


def _run_torchrun(command: list[str], env: dict, timeout: float) -> tuple[int, str]:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # torchrun and the workers write nothing into the caller's cwd
        # a session of its own: on a timeout or an interrupt the whole group (torchrun and its workers) is killed
        process = subprocess.Popen(
            command,
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return process.returncode, stderr


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DDP training of a course_lib model (launch with torchrun).")
    parser.add_argument("--data", required=True, help=".npz with X, y (and optionally X_val, y_val)")
    parser.add_argument(
        "--model", required=True, help="class name in the catalogue (course_lib.models.registry)"
    )
    parser.add_argument("--config", required=True, help="JSON constructor keyword arguments")
    parser.add_argument("--out", required=True, help="directory for rank 0's checkpoint")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--batch-size", type=int, default=128, help="per rank: the global batch is W times this"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="stop each epoch after this many steps")
    parser.add_argument("--no-shuffle", action="store_true")
    parser.add_argument("--drop-last", action="store_true")
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--run-id", default=None, help="stored in the checkpoint (launch checks it)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
