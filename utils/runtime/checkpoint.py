"""Saving and loading weights: atomic writes, safe loads, readable errors."""
import os
import pickle
import random
import tempfile
import zipfile

import numpy as np
import torch

from . import distributed
from .errors import UserError


def atomic_save(obj, path):
    """torch.save to a temporary file in the same folder, then rename over ``path``.

    A run killed mid-write leaves the previous file intact, never a torn one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    except OSError as e:
        raise UserError(f"Cannot write {path}: {e.strerror}. Choose a writable folder "
                        f"or fix its permissions.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_state_dict(model, path):
    atomic_save(model.state_dict(), path)


def safe_load(path, what="checkpoint", hint=""):
    """Load a checkpoint without running any code stored in it (``weights_only=True``)."""
    if not os.path.isfile(path):
        raise UserError(f"The {what} '{path}' does not exist. {hint}".strip())
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(
            f"Refused to load {path}: it holds objects other than tensors and plain "
            f"containers, which could run code when unpickled, so it was not loaded "
            f"(details: {str(e).splitlines()[0]}). Use a plain state_dict.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise UserError(f"Cannot read {path}: the file is truncated or not a PyTorch "
                        f"checkpoint ({str(e).splitlines()[0]}). Re-download or re-create it.") from None


def extract_state_dict(obj):
    """Accept a bare state_dict (the published teachers) or one of our checkpoint dicts."""
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "student"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
    return obj


def describe_mismatch(model, state_dict):
    """A short human-readable list of missing, unexpected and wrongly shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items()
              if k in state_dict and hasattr(state_dict[k], "shape") and state_dict[k].shape != v.shape]
    lines = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:6]) + (f", ... ({len(items)} in all)" if len(items) > 6 else "")
            lines.append(f"{title}: {shown}")
    return "; ".join(lines)


def num_classes(state_dict):
    """Output size of the last weight matrix or conv kernel (the classifier), if any."""
    weights = [v for k, v in state_dict.items() if k.endswith("weight") and getattr(v, "ndim", 0) >= 2]
    return int(weights[-1].shape[0]) if weights else None


def load_weights(model, path, what="checkpoint", hint="", context=""):
    """Load ``path`` into ``model`` with strict key matching; explain any mismatch.

    ``context`` names what fixed the model's class count (e.g. "--dataset cifar10").
    """
    state_dict = extract_state_dict(safe_load(path, what, hint))
    if not isinstance(state_dict, dict):
        raise UserError(f"The {what} '{path}' does not contain a state_dict.")
    have, need = num_classes(state_dict), num_classes(model.state_dict())
    if set(state_dict) == set(model.state_dict()) and have != need:
        raise UserError(f"The {what} '{path}' has {have} classes, {context or 'the model'} "
                        f"needs {need}. Pass the checkpoint trained on that data set.")
    mismatch = describe_mismatch(model, state_dict)
    if mismatch:
        raise UserError(f"The {what} '{path}' does not fit {type(model).__name__}: {mismatch}. "
                        f"Check --model/--dataset, or that the file is the right one.")
    model.load_state_dict(state_dict, strict=True)
    return model


# ---- resumable training state -------------------------------------------------------

def rng_state():
    """The states of every random number generator a run draws from, in loadable form."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(_as_tuples(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    """Python's random state is nested tuples; a round trip through torch.load may give lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def check_resumable(saved_args, args, keys):
    """Refuse to resume a run under other arguments that change what is being trained."""
    differences = [f"--{k} {saved_args.get(k)} (saved) vs {getattr(args, k)} (now)"
                   for k in keys if saved_args.get(k) != getattr(args, k)]
    if differences:
        raise UserError("Cannot resume: the saved run used other arguments: " + "; ".join(differences)
                        + ". Resume with the original arguments, or start a new run without --resume.")


def load_last(path, args, keys):
    """Load a ``last`` checkpoint written by :func:`save_training_state` for ``--resume``."""
    state = safe_load(path, "checkpoint to resume from",
                      hint="It is written after every epoch; run without --resume to start afresh.")
    if not isinstance(state, dict) or "args" not in state:
        raise UserError(f"{path} is not a checkpoint to resume from (it holds no run state).")
    check_resumable(state["args"], args, keys)
    if state["world_size"] != distributed.world_size():
        # Each process draws its own noise (DFAD) or data share (teachers) from its own RNG:
        # another process count would be another run, not this one continued.
        raise UserError(f"Cannot resume {path}: the saved run used {state['world_size']} processes, "
                        f"this one {distributed.world_size()}. Resume with the same number of processes.")
    return state


def _state_of(holder):
    if holder is None:
        return None
    if isinstance(holder, (list, tuple)):
        return [h.state_dict() for h in holder]
    return holder.state_dict()


def _load_into(holder, state):
    if holder is None or state is None:
        return
    if isinstance(holder, (list, tuple)):
        for h, s in zip(holder, state):
            h.load_state_dict(s)
    else:
        holder.load_state_dict(state)


def save_training_state(path, args, holders, **progress):
    """Write everything ``--resume`` needs, for teacher training and DFAD alike.

    ``holders`` maps checkpoint keys to objects with a ``state_dict()`` (modules,
    optimizers, schedulers, :class:`Precision`), lists of them, or None; ``progress``
    holds plain values (epoch, best score, ...). Collective: every process calls it and
    contributes its RNG states; the first process writes.
    """
    rng = distributed.all_gather_object(rng_state())
    if not distributed.is_main():
        return
    atomic_save({"args": vars(args), **{key: _state_of(h) for key, h in holders.items()}, **progress,
                 "rng": rng, "world_size": distributed.world_size()}, path)


def restore_training_state(path, args, resume_keys, holders):
    """Load what :func:`save_training_state` wrote into ``holders`` and this process's
    RNGs; returns the whole saved dict (its progress values included)."""
    state = load_last(path, args, resume_keys)
    for key, holder in holders.items():
        _load_into(holder, state[key])
    set_rng_state(state["rng"][distributed.rank()])
    return state


def ensure_writable(*folders):
    """Fail before any training if an output folder cannot be written."""
    for folder in folders:
        try:
            os.makedirs(folder, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
            os.close(fd)
            os.remove(probe)
        except OSError as e:
            raise UserError(f"Cannot write to the output folder {folder}: {e.strerror}. Run from a "
                            f"folder you can write to, or fix its permissions.") from None
