"""Data-parallel training with torchrun: one process per device, gloo on CPU, NCCL on GPU.

``torchrun --nproc_per_node=N script.py ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; a
plain ``python script.py`` runs as a world of one and nothing here does anything.
"""
import io
import os

import torch
import torch.distributed as dist

from .errors import UserError


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def launched_world_size():
    """The processes torchrun started (WORLD_SIZE), known before :func:`init` joins them."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def is_main():
    return rank() == 0


def device_type(no_cuda=False):
    """"cuda" or "cpu": what :func:`init` will choose (known before it runs, e.g. while parsing flags)."""
    return "cuda" if torch.cuda.is_available() and not no_cuda else "cpu"


def init(no_cuda=False):
    """Join the process group when started by torchrun; returns this process's device."""
    use_cuda = device_type(no_cuda) == "cuda"
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return torch.device("cuda" if use_cuda else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def local_batch_size(batch_size):
    """``--batch_size`` is the global batch: each of the N processes draws 1/N of it."""
    n = world_size()
    if batch_size % n:
        raise UserError(f"--batch_size {batch_size} cannot be split evenly over {n} processes; "
                        f"use a multiple of {n}.")
    return batch_size // n


def all_gather_object(obj):
    """Every process's ``obj`` (tensors allowed), as a list indexed by rank."""
    if not dist.is_initialized():
        return [obj]
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # tensors travel as bytes: all_gather_object can't pickle them all
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, buffer.getvalue())
    return [torch.load(io.BytesIO(blob), weights_only=True) for blob in gathered]


def agree(*flags):
    """Each flag AND-ed over every process, as a tuple, in one all-reduce (no
    communication in a world of one)."""
    if not dist.is_initialized():
        return tuple(bool(f) for f in flags)
    values = torch.tensor([1.0 if bool(f) else 0.0 for f in flags])
    dist.all_reduce(values, op=dist.ReduceOp.MIN)
    return tuple(bool(v) for v in values.tolist())


def wrap(model, device):
    """DistributedDataParallel in a multi-process run, plain ``model`` otherwise."""
    if not dist.is_initialized():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model):
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def cleanup():
    if dist.is_initialized():
        dist.destroy_process_group()
