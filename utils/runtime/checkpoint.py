"""Saving and loading weights: atomic writes, safe loads, readable errors, and the checks
of every output a run will write, made before it trains (a run that could only fail at
its end, at a folder where a checkpoint goes or a damaged log it appends to, fails at its
start instead, with one message and nothing written)."""
import contextlib
import math
import os
import pickle
import random
import tempfile
import zipfile

import numpy as np
import torch

from . import atomic, distributed
from .errors import UserError


def atomic_save(obj, path):
    """torch.save to a temporary file in the same folder, then rename over ``path``.

    A run killed mid-write leaves the previous file intact, never a torn one; the
    temporary file of a killed run is removed by the next run (:mod:`utils.runtime.atomic`).
    """
    atomic.write_bytes(path, _saver(obj), suffix=".pt")


def save_state_dict(model, path):
    """Save ``model``'s weights; a model with non-finite weights is never saved, so a
    diverged run cannot replace a good checkpoint."""
    save_state_dicts([(model, path)])


def save_state_dicts(pairs):
    """Save each ``(model, path)``'s weights as one set: all files or none (a student
    is never published without its generator). Nothing is written when any model has
    non-finite weights."""
    for model, path in pairs:
        bad = non_finite_keys(model.state_dict())
        if bad:
            raise UserError(f"Refused to save {path}: the weights {', '.join(bad[:3])} are not finite "
                            f"(nan or inf), so training diverged. The previous file was kept. Lower the "
                            f"learning rate and resume with --resume, or start again.")
    atomic.write_all([(path, _saver(model.state_dict()), ".pt") for model, path in pairs])


def _saver(obj):
    return lambda f: torch.save(obj, f)


def non_finite_keys(state_dict):
    """Names of the floating-point tensors of ``state_dict`` that hold nan or inf."""
    return [k for k, v in state_dict.items()
            if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]


def safe_load(path, what="checkpoint", hint="", mmap=False):
    """Load a checkpoint without running any code stored in it (``weights_only=True``).

    The file is looked at first: a folder, an empty file, a web page, text or random
    bytes get a message saying what they are, and a zip whose entries would inflate
    beyond the file's size (torch.save never compresses) is refused before anything of
    it is read into memory. With ``mmap`` the tensors are mapped, not read: cheap when
    only the plain values of a large checkpoint are wanted.
    """
    check_checkpoint_file(path, what, hint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if _would_run_code(e):
            raise UserError(
                f"Refused to load {path}: it holds objects other than tensors and plain "
                f"containers, which could run code when unpickled, so it was not loaded "
                f"({_torch_reason(e)}). Use a plain state_dict.") from None
        raise _unreadable(path, e) from None
    except Exception as e:  # anything else torch.load raises on a damaged file
        raise _unreadable(path, e) from None


def check_checkpoint_file(path, what="checkpoint", hint=""):
    """Fail with one clear message unless ``path`` looks like a file torch.save wrote."""
    if os.path.isdir(path):
        raise UserError(f"The {what} '{path}' is a folder, not a checkpoint file. Pass the .pt file.")
    if not os.path.isfile(path):
        raise UserError(f"The {what} '{path}' does not exist. {hint}".strip())
    size = os.path.getsize(path)
    if size == 0:
        raise UserError(f"The {what} '{path}' is empty (0 bytes): an interrupted download or "
                        f"copy. Re-download or re-create it.")
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):
        _check_zip_entries(path, size)
    elif not head.startswith(b"\x80"):  # torch's legacy format is a pickle (protocol >= 2)
        raise UserError(f"The {what} '{path}' is not a PyTorch checkpoint: it is {_describe(head)}. "
                        f"Re-download it (the link may have returned an error or login page) "
                        f"or pass the right file.")


def _check_zip_entries(path, size):
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise _unreadable(path, e) from None
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.header_offset + entry.compress_size > size:
            raise UserError(
                f"Refused to load {path}: its entry {entry.filename} declares {entry.file_size} bytes "
                f"in a {size}-byte file. torch.save never compresses, so this is not a file it wrote "
                f"(it could exhaust memory). Re-download or re-create it.")


def _describe(head):
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in text:
        return "an HTML/XML page"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "neither a zip archive nor a pickle (unknown binary data)"


def _would_run_code(error):
    """torch's weights-only unpickler refuses globals and object construction (code) and
    unknown opcodes (damage) with the same exception type; tell them apart."""
    return any(k in str(error) for k in ("GLOBAL", "allowlist", "Can only create", "Can only build"))


def _torch_reason(error):
    """The one informative line of torch's long load error."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue",
                   "WeightsUnpickler error")
    lines = [line.strip() for line in str(error).splitlines()]
    useful = [line for line in lines if line and not line.startswith(boilerplate)]
    return useful[0] if useful else type(error).__name__


def _unreadable(path, error):
    return UserError(f"Cannot read {path}: the file is truncated, damaged or not a PyTorch "
                     f"checkpoint ({type(error).__name__}: {_torch_reason(error)}). "
                     f"Re-download or re-create it.")


def extract_state_dict(obj):
    """Accept a bare state_dict (the published teachers) or a dict holding one under
    "model" or "student" (our checkpoints) or "state_dict" (CMI's published teachers,
    ``{'state_dict': ..., 'best_acc1': ..., ...}``); anything else is returned as it is."""
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
    A state_dict taken out of a larger dict (:func:`extract_state_dict`), or whose keys
    all carry the "module." prefix of a DataParallel/DistributedDataParallel save (removed
    here), is announced in one line naming what was unwrapped and what was ignored.
    """
    saved = safe_load(path, what, hint)
    state_dict = extract_state_dict(saved)
    if not isinstance(state_dict, dict):
        raise UserError(f"The {what} '{path}' does not contain a state_dict.")
    source, taken = path, []  # what was read and how, for the line announcing it
    if state_dict is not saved:
        key = next(k for k, v in saved.items() if v is state_dict)
        others = [str(k) for k in saved if k != key]
        ignored = ", ".join(others[:6]) + (f", ... ({len(others)} in all)" if len(others) > 6 else "")
        source = f"the '{key}' entry of {path}" + (f" (other entries ignored: {ignored})" if others else "")
        taken.append(f"its '{key}' entry")
    prefix, own = "module.", model.state_dict()
    if state_dict and all(isinstance(k, str) and k.startswith(prefix) for k in state_dict) \
            and not any(k.startswith(prefix) for k in own):
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
        source += (f" with the '{prefix}' prefix removed from its keys (saved from a DataParallel "
                   f"or DistributedDataParallel wrapper)")
        taken.append(f"its keys without the '{prefix}' prefix")
    have, need = num_classes(state_dict), num_classes(own)
    if set(state_dict) == set(own) and have != need:
        raise UserError(f"The {what} '{path}' has {have} classes, {context or 'the model'} "
                        f"needs {need}. Pass the checkpoint trained on that data set.")
    mismatch = describe_mismatch(model, state_dict)
    if mismatch:
        read_as = f" (read as {' and '.join(taken)})" if taken else ""
        raise UserError(f"The {what} '{path}'{read_as} does not fit {type(model).__name__}: {mismatch}. "
                        f"Check --model/--dataset, or that the file is the right one.")
    model.load_state_dict(state_dict, strict=True)
    if taken and distributed.is_main():
        print(f"Loaded {source}", flush=True)
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
    """Refuse to resume a run under other arguments that change what is being trained;
    ``keys`` names those arguments."""
    saved = {k: saved_args.get(k) for k in keys}
    now = {k: getattr(args, k, None) for k in keys}  # None: a flag this script lacks (--teacher)
    differences = [f"--{k} {saved[k]} (saved) vs {now[k]} (now)" for k in keys if saved[k] != now[k]]
    if differences:
        raise UserError("Cannot resume: the saved run used other arguments: " + "; ".join(differences)
                        + ". Resume with the original arguments, or start a new run with --restart "
                          "instead of --resume (it discards the saved one).")


NUMBER = (int, float)


def load_last(path, args, keys, schema, layout):
    """Load a ``last`` checkpoint written by :func:`save_training_state` for ``--resume``.

    ``schema`` maps the entries the caller will use to their types, ``layout`` is the
    layout the caller writes: a file of another layout, or edited, is refused here with
    one message instead of failing later.
    """
    state = safe_load(path, "checkpoint to resume from",
                      hint="It is written after every epoch; run without --resume to start afresh.")
    if not isinstance(state, dict) or not isinstance(state.get("args"), dict):
        raise UserError(f"{path} is not a checkpoint to resume from (it holds no run state). "
                        f"Pass the -last.pt file a run wrote, or start afresh without --resume.")
    if state.get("layout") != layout:
        raise UserError(f"Cannot resume from {path}: an earlier version of this program wrote it, and "
                        f"this one saves a run's state otherwise. Finish that run with the commit that "
                        f"started it, or start afresh with --restart instead of --resume.")
    problems = _schema_problems(state, schema)
    if problems:
        raise UserError(f"Cannot resume from {path}: it was written by another version of this "
                        f"program or is damaged ({'; '.join(problems[:4])}). Move it away and start "
                        f"afresh without --resume, or resume with the version that wrote it.")
    check_resumable(state["args"], args, keys)
    if state["world_size"] != distributed.world_size():
        # Each process draws its own noise (DFAD) or data share (teachers) from its own RNG:
        # another process count would be another run, not this one continued.
        raise UserError(f"Cannot resume {path}: the saved run used {state['world_size']} processes, "
                        f"this one {distributed.world_size()}. Resume with the same number of processes.")
    return state


def protect_resume_point(path, args):
    """Before a run that is not ``--resume``: never replace silently the ``-last.pt`` at
    ``path`` of a run that has not finished. ``--restart`` discards it (removed here, so
    a later --resume cannot pick up the old run); a finished run's may be replaced."""
    if args.resume or getattr(args, "test_only", False) or not os.path.isfile(path):
        return
    if args.restart:
        try:
            os.remove(path)
        except OSError as e:
            raise UserError(f"Cannot discard {path} (--restart): {e.strerror}. Remove it yourself, "
                            f"or fix the folder's permissions.") from None
        print(f"Discarded {path} (--restart): this run starts afresh.", flush=True)
        return
    progress = unfinished_progress(path)
    if progress:
        raise UserError(f"{path} holds an unfinished run ({progress}); starting a new run would "
                        f"replace it. Continue it with the same command plus --resume, or add "
                        f"--restart to discard it and start afresh.")


def unfinished_progress(path):
    """How far the run whose ``-last.pt`` is ``path`` got, in words; None once it has
    finished (it recorded as many epochs done as it was started for). Only the plain
    values are read: its tensors are mapped, not loaded."""
    try:
        state = safe_load(path, "resume point", mmap=True)
    except UserError as e:
        raise not_a_resume_point(path, str(e)) from None
    saved = state.get("args") if isinstance(state, dict) else None
    progress = state.get("progress") if isinstance(state, dict) else None
    progress = progress if isinstance(progress, dict) else {}
    epoch, epochs = (progress.get("epoch"), saved.get("epochs")) if isinstance(saved, dict) else (None, None)
    if not (isinstance(epoch, int) and isinstance(epochs, int)):
        raise not_a_resume_point(path, "it records no epochs done of a number of epochs")
    if epoch >= epochs:
        return None
    iteration = progress.get("iteration")
    done = f"{epoch} of {epochs} epochs"
    if isinstance(iteration, int) and iteration > 0:
        done += f" and {iteration} of {saved.get('epoch_itrs')} iterations of epoch {epoch + 1}"
    return done + " done"


def not_a_resume_point(path, reason):
    return UserError(f"{path} is where this run saves its resume point, but the file there cannot "
                     f"be read as one ({reason.rstrip('.')}). Add --restart to discard it and start "
                     f"afresh, or move it away.")


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


def save_training_state(path, args, holders, **plain):
    """Write everything ``--resume`` needs, for teacher training and DFAD alike.

    ``holders`` maps checkpoint keys to objects with a ``state_dict()`` (modules,
    optimizers, schedulers, :class:`Precision`, the engine's own parts), lists of them, or
    None; ``plain`` holds plain values (the layout, a shuffle state). Collective: every
    process calls it (a part may gather from every process) and contributes its RNG
    states; the first process writes.
    """
    entries = {key: _state_of(h) for key, h in holders.items()}
    rng = distributed.all_gather_object(rng_state())
    if not distributed.is_main():
        return
    atomic_save({"args": vars(args), **entries, **plain, "rng": rng, "world_size": distributed.world_size()}, path)


def restore_training_state(path, args, resume_keys, holders, schema, layout):
    """Load what :func:`save_training_state` wrote into ``holders`` and this process's
    RNGs; returns the whole saved dict. ``schema`` lists the entries' types and
    ``layout`` the layout the caller writes (:func:`load_last`)."""
    state = load_last(path, args, resume_keys, schema, layout)
    with resume_errors(path):
        for key, holder in holders.items():
            _load_into(holder, state[key])
        set_rng_state(state["rng"][distributed.rank()])
    return state


PROGRESS = {"epoch": int, "best": NUMBER, "history": list}  # in every -last.pt's "progress"


def _schema_problems(state, schema, prefix=""):
    problems = []
    for key, kind in schema.items():
        if key not in state:
            problems.append(f"'{prefix}{key}' is missing")
        elif not isinstance(state[key], kind) or (kind is int and isinstance(state[key], bool)):
            problems.append(f"'{prefix}{key}' is a {type(state[key]).__name__}")
        elif kind in (int, NUMBER) and not state[key] >= (-math.inf if kind is NUMBER else 0):
            problems.append(f"'{prefix}{key}' is {state[key]}")
    if isinstance(state.get("progress"), dict) and not prefix:
        problems += _schema_problems(state["progress"], PROGRESS, "progress.")
        history = state["progress"].get("history")
        if isinstance(history, list) and not all(isinstance(v, NUMBER) for v in history):
            problems.append("'progress.history' holds other things than numbers")
    return problems


@contextlib.contextmanager
def resume_errors(path):
    """Turn a failure while applying a ``last`` checkpoint (a network of another shape:
    RuntimeError; an optimizer of another shape: ValueError, KeyError; random states or
    entries of another layout: TypeError, IndexError) into one message naming the file.
    The entries' types were checked before (``_schema_problems``)."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        detail = " ".join(str(e).split())[:300] or type(e).__name__
        raise UserError(f"Cannot resume from {path}: it does not fit this run; it was written by "
                        f"another version of this program, for another network, or is damaged "
                        f"({type(e).__name__}: {detail}). Move it away and start afresh without "
                        f"--resume, or resume with the version and arguments that wrote it.") from e


def apply_changed_hyperparameters(saved_args, args, optimizers, schedulers, announce=True):
    """On ``--resume``, use the learning rates, momentum and weight decay given now.

    ``optimizers`` pairs each optimizer with ``{flag: param-group key}``. A changed
    learning rate also rescales the schedulers' base values, so the decay schedule goes
    on from where it was: lr = new value x the decay reached so far. Prints one line
    naming the changes (when ``announce``) and returns them.
    """
    changes = []
    for optimizer, flags in optimizers:
        for flag, key in flags.items():
            old, new = saved_args.get(flag), getattr(args, flag, None)
            if new is None or old == new:
                continue
            changes.append(f"--{flag} {old} -> {new}")
            if key == "lr":
                _rescale_lr(optimizer, [s for s in schedulers if s.optimizer is optimizer], old, new)
            else:
                for group in optimizer.param_groups:
                    group[key] = new
    if changes and announce:
        print(f"Resumed with changed hyperparameters, now in effect: {'; '.join(changes)}", flush=True)
    return changes


def _rescale_lr(optimizer, schedulers, old, new):
    valid = isinstance(old, NUMBER) and math.isfinite(old) and old > 0
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = group["lr"] * new / old if valid else new
        if "initial_lr" in group:
            group["initial_lr"] = new
        for scheduler in schedulers:
            scheduler.base_lrs[i] = new
            if getattr(scheduler, "_last_lr", None):
                scheduler._last_lr[i] = group["lr"]


def ensure_writable(*folders):
    """Fail before any training if an output folder cannot be written."""
    for folder in folders:
        try:
            os.makedirs(folder, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=atomic.temp_prefix(), dir=folder)
            os.close(fd)
            os.remove(probe)
        except (FileExistsError, NotADirectoryError):
            raise blocked_folder(folder) from None
        except OSError as e:
            raise UserError(f"Cannot write to the output folder {folder}: {e.strerror}. Run from a "
                            f"folder you can write to, or fix its permissions.") from None


def blocked_folder(folder):
    """The error for an output folder that a file stands in the way of, or None."""
    parts, path = os.path.normpath(folder).split(os.sep), ""
    for part in parts:
        path = os.path.join(path, part) if path else (part or os.sep)
        if os.path.lexists(path) and not os.path.isdir(path):
            return UserError(f"Cannot write to the output folder {folder}: a file is in the way "
                             f"({path} is a file, not a folder). Move it away, or run from another "
                             f"directory.")
    return None


def check_outputs(files=(), folders=()):
    """Fail unless every output can be written; remove dead runs' temporary files.

    ``files`` are written (replaced whole, or extended: a log's present content is the
    caller's to check), ``folders`` receive new files. Folders are created.
    """
    for path in files:
        check_file_target(path)
    folders = sorted({os.path.dirname(p) or "." for p in files} | set(folders))
    for folder in folders:  # all checked before any is created
        error = blocked_folder(folder)
        if error:
            raise error
    ensure_writable(*folders)
    for folder in folders:
        atomic.sweep_stale(folder)


def check_file_target(path):
    """``path`` is absent or a file that a rename may replace."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder, but this run writes a file there. Move the folder "
                        f"away (or run from another directory), then start again.")
    if os.path.lexists(path) and not os.path.islink(path) and not os.path.isfile(path):
        raise UserError(f"{path} is not a regular file (a device, socket or pipe), but this run "
                        f"writes a file there. Remove it, then start again.")
