"""Saving and loading weights: atomic writes, safe loads, readable errors."""
import os
import pickle
import tempfile
import zipfile

import torch

from .misc import UserError


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


def load_weights(model, path, what="checkpoint", hint=""):
    """Load ``path`` into ``model`` with strict key matching; explain any mismatch."""
    state_dict = extract_state_dict(safe_load(path, what, hint))
    if not isinstance(state_dict, dict):
        raise UserError(f"The {what} '{path}' does not contain a state_dict.")
    mismatch = describe_mismatch(model, state_dict)
    if mismatch:
        raise UserError(f"The {what} '{path}' does not fit {type(model).__name__}: {mismatch}. "
                        f"Check --model/--dataset, or that the file is the right one.")
    model.load_state_dict(state_dict, strict=True)
    return model
