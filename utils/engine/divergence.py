"""Non-finite numbers caught where they start: a diverging player of the game, a
diverging teacher, a NaN teacher file.

A diverged model is never saved (see :func:`utils.runtime.checkpoint.save_state_dict`), and a
teacher that is already broken is named as the cause before the DFAD game starts,
instead of the student being blamed for diverging against it.
"""
import torch

from ..runtime import checkpoint, distributed
from ..runtime.errors import UserError


def check_round(epoch, i, loss_S, loss_G, stop):
    """The one collective of a round: all processes learn together whether any player
    diverged anywhere (then the game stops with an error: nothing of the epoch is saved)
    or any process was asked to stop (then all stop at the same round; returns whether to
    stop now, see ``GracefulStop.follow``). It costs one
    all-reduce of two numbers (tens of microseconds) and a host sync (the losses are
    read), nothing in a world of one."""
    finite = bool(torch.isfinite(torch.stack([loss_S.float(), loss_G.float()])).all())
    all_finite, none_stopping = distributed.agree(finite, not stop.requested)
    stopping = stop.follow(none_stopping)
    if all_finite:
        return stopping
    player, value = ("student", loss_S) if not torch.isfinite(loss_S) else ("generator", loss_G)
    raise UserError(
        f"The {player} diverged: its loss became {value.item()} at epoch {epoch}, iteration {i}"
        f"{_where()}. Nothing was saved from this epoch, so the last good checkpoints are intact. "
        f"Resume from the last good epoch with --resume and a lower --lr_S / --lr_G (changed "
        f"learning rates take effect on resume), or start again with lower ones.")


def _where():
    return f" (process {distributed.rank()})" if distributed.world_size() > 1 else ""


def check_teacher(teacher, loader, device, path):
    """Fail if ``teacher`` has non-finite weights, or on the first test batch non-finite
    outputs or outputs that do not depend on the input."""
    bad = checkpoint.non_finite_keys(teacher.state_dict())
    if bad:
        raise UserError(f"The teacher checkpoint '{path}' holds non-finite weights (nan or inf in "
                        f"{', '.join(bad[:3])}): it was saved from a diverged training run, so no "
                        f"student can learn from it. Retrain it with a lower --lr, or pass another --ckpt.")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the game's noise stays as it was
        images = next(iter(loader))[0].to(device)
        outputs = teacher(images)
    if not all(torch.isfinite(t).all() for t in _tensors(outputs)):
        raise UserError(f"The teacher checkpoint '{path}' gives non-finite outputs (nan or inf) on "
                        f"the first test batch, though its weights are finite: it is broken (e.g. "
                        f"saved from a diverging run, or BatchNorm statistics overflowed). Retrain "
                        f"it with a lower --lr, or pass another --ckpt.")
    if ignores_input(outputs, len(images)):
        raise UserError(f"The teacher checkpoint '{path}' gives the same outputs for all {len(images)} "
                        f"images of the first test batch: they do not depend on its input (all-zero or "
                        f"dead weights, say), so it predicts one class for everything and no student can "
                        f"learn from it (the game would go on and blame the generator for the collapse). "
                        f"Retrain it, or pass another --ckpt.")


def ignores_input(outputs, batch, tolerance=1e-6):
    """Whether every image of a batch of ``batch`` got the same outputs, to within
    ``tolerance`` of their largest magnitude (a trained or freshly initialised network's
    differ by far more). One image proves nothing."""
    if batch < 2:
        return False
    for t in _tensors(outputs):
        t = t.float()
        if (t - t[:1]).abs().max() > tolerance * t.abs().max():
            return False
    return True


def _tensors(outputs):
    if torch.is_tensor(outputs):
        return [outputs]
    values = outputs.values() if isinstance(outputs, dict) else outputs
    return [t for t in values if torch.is_tensor(t)]


def check_teacher_training(model, loss, epoch):
    """Stop a teacher run whose loss or weights became non-finite, before it evaluates or
    saves anything of that epoch (every process stops together)."""
    finite = torch.isfinite(torch.tensor(float(loss))).item() and not checkpoint.non_finite_keys(model.state_dict())
    (all_finite,) = distributed.agree(finite)
    if all_finite:
        return
    raise UserError(
        f"The teacher diverged in epoch {epoch}{_where()}: its loss or weights became non-finite "
        f"(last loss {loss}). Nothing was saved from this epoch, so the best teacher and its "
        f"-last.pt checkpoint still hold the last good epoch. Resume with --resume and a lower "
        f"--lr (a changed --lr takes effect on resume), or start again with a lower --lr.")
