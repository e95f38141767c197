"""The DFAD min-max game, written once for every experiment.

Per outer iteration the student takes ``STUDENT_STEPS`` steps towards the teacher on
fresh generated batches, then the generator takes one step towards samples on which
the two disagree most. An epoch is ``args.epoch_itrs`` outer iterations followed by
an evaluation of the student on the real test set.

What differs between experiments (networks, metric, generator loss, schedule,
checkpoint names) arrives in an :class:`Experiment`; scripts never copy this loop.
"""
import math
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from . import checkpoint, distributed, divergence, logger, preflight
from .interrupt import GracefulStop, Interrupted
from .misc import UserError, denormalize
from .precision import Precision
from .visualizer import VisdomPlotter

STUDENT_STEPS = 5
RESUME_KEYS = ("dataset", "model", "nz")  # a run resumed under other values would be another run


def discrepancy(s_logit, t_logit):
    """Mean absolute error between student and teacher logits (the game's value)."""
    return F.l1_loss(s_logit.float(), t_logit.float())


def adversarial_loss_l1(s_logit, t_logit):
    """Classification: the generator maximises the L1 discrepancy."""
    return -discrepancy(s_logit, t_logit)


def adversarial_loss_log_l1(s_logit, t_logit):
    """Segmentation: -log(L1 + 1) keeps the generator's gradient bounded on dense outputs."""
    return -torch.log(discrepancy(s_logit, t_logit) + 1)


def sample_noise(batch_size, nz, device):
    return torch.randn(batch_size, nz, 1, 1, device=device)


def freeze(model):
    """Eval mode and no weight gradients: the teacher is never trained."""
    model.eval()
    model.requires_grad_(False)
    return model


def student_step(teacher, student, generator, optimizer_S, z, precision=Precision()):
    """Move the student towards the teacher on one generated batch."""
    with torch.no_grad(), precision.autocast():  # the generator is not updated here: no graph
        fake = distributed.unwrap(generator)(z)
        t_logit = teacher(fake)
    optimizer_S.zero_grad(set_to_none=True)
    with precision.autocast():
        loss_S = discrepancy(student(fake), t_logit)
    precision.step(loss_S, optimizer_S, "student")
    return loss_S.detach()


def generator_step(teacher, student, generator, optimizer_G, z, adversarial_loss, precision=Precision()):
    """Move the generator towards samples where student and teacher disagree."""
    # Gradients flow through the student to the images, but nobody reads the
    # student's weight gradients here, so they are not computed (nor synchronised).
    student = distributed.unwrap(student)
    student.requires_grad_(False)
    try:
        optimizer_G.zero_grad(set_to_none=True)
        with precision.autocast():
            fake = generator(z)
            loss_G = adversarial_loss(student(fake), teacher(fake))
        precision.step(loss_G, optimizer_G, "generator")
    finally:
        student.requires_grad_(True)
    return loss_G.detach()


@dataclass
class Experiment:
    """Everything that makes one DFAD experiment different from another."""

    name: str                       # data set name: env DFAD-<name>, log/DFAD-<name>.csv
    teacher: nn.Module
    student: nn.Module
    generator: nn.Module
    test_loader: object
    evaluate: Callable              # (student, loader, device) -> {metric_name: value, ...}
    metric_name: str                # key of evaluate()'s result that picks the best student
    model: str = ""                 # student name: checkpoint/student/<name>-<model>[-generator].pt
    student_ckpt: str = ""          # set only to override those names
    generator_ckpt: str = ""
    adversarial_loss: Callable = adversarial_loss_l1
    make_schedulers: Optional[Callable] = None   # (optimizer_S, optimizer_G) -> [schedulers]
    mean: tuple = (0.5,)            # normalisation of the real inputs, to display images
    std: tuple = (0.5,)
    extra_plots: List[Callable] = field(default_factory=list)  # (exp, plotter, epoch, device) hooks

    def __post_init__(self):
        # The reference's checkpoint names, decided here once for every script.
        self.student_ckpt = self.student_ckpt or f"checkpoint/student/{self.name}-{self.model}.pt"
        self.generator_ckpt = self.generator_ckpt or self.student_ckpt[:-len(".pt")] + "-generator.pt"

    @property
    def last_ckpt(self):
        """Everything needed to resume, rewritten after every epoch."""
        return self.student_ckpt[:-len(".pt")] + "-last.pt"


@dataclass
class Game:
    """The players as the training loop uses them, their optimizers and the run's progress."""

    teacher: nn.Module
    student: nn.Module
    generator: nn.Module
    optimizer_S: torch.optim.Optimizer
    optimizer_G: torch.optim.Optimizer
    schedulers: list
    precision: Precision
    fixed_z: torch.Tensor
    batch_size: int                 # this process's share of --batch_size
    epoch: int = 0                  # completed epochs
    iteration: int = 0              # completed iterations of the next epoch (after an interruption)
    best: float = -math.inf
    history: list = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # a finished run is logged once


def check_finite(epoch, i, loss_S, loss_G):
    if not distributed.all_true(torch.isfinite(torch.stack([loss_S.float(), loss_G.float()])).all()):
        player, value = ("student", loss_S) if not torch.isfinite(loss_S) else ("generator", loss_G)
        where = f" (process {distributed.rank()})" if distributed.world_size() > 1 else ""
        raise UserError(
            f"The {player} diverged: its loss became {value.item()} at epoch {epoch}, iteration {i}"
            f"{where}. Nothing was saved from this epoch, so the last good checkpoints are intact. "
            f"Resume from the last good epoch with --resume and a lower --lr_S / --lr_G (changed "
            f"learning rates take effect on resume), or start again with lower ones.")


def train_epoch(args, game, adversarial_loss, device, epoch, plotter, stop):
    """Outer iterations ``game.iteration .. args.epoch_itrs`` of one epoch of the game.

    Returns the last losses; ``game.iteration`` counts the iterations done (it is
    short of ``epoch_itrs`` only when a stop was requested).
    """
    game.student.train()
    game.generator.train()
    bar = tqdm(range(game.iteration, args.epoch_itrs), desc=f"epoch {epoch}/{args.epochs}",
               leave=False, disable=None if distributed.is_main() else True, dynamic_ncols=True,
               initial=game.iteration, total=args.epoch_itrs)
    loss_S = loss_G = torch.tensor(float("nan"))
    for i in bar:
        # Student: imitate the teacher on fresh samples (minimise the discrepancy).
        for _ in range(STUDENT_STEPS):
            z = sample_noise(game.batch_size, args.nz, device)
            loss_S = student_step(game.teacher, game.student, game.generator, game.optimizer_S, z,
                                  game.precision)

        # Generator: look for samples where the two disagree (maximise it).
        z = sample_noise(game.batch_size, args.nz, device)
        loss_G = generator_step(game.teacher, game.student, game.generator, game.optimizer_G, z,
                                adversarial_loss, game.precision)

        check_finite(epoch, i, loss_S, loss_G)
        game.iteration = i + 1
        if i % args.log_interval == 0 or i == args.epoch_itrs - 1:
            bar.set_postfix(Loss_S=f"{loss_S.item():.4f}", Loss_G=f"{loss_G.item():.4f}")
            step = (epoch - 1) * args.epoch_itrs + i
            plotter.scalar("Loss_S", step, loss_S.item())
            plotter.scalar("Loss_G", step, loss_G.item())
        if not distributed.all_true(not stop.requested):  # every process stops at the same step
            stop.signum = stop.signum or signal.SIGTERM
            break
    bar.close()
    return loss_S.item(), loss_G.item()


@torch.no_grad()
def show_samples(exp, plotter, fixed_z, real_images, epoch):
    """A grid of generated samples (fixed noise, so epochs compare) and of real inputs,
    sent to visdom and written to results/DFAD-<name>/samples/ (there even without a server)."""
    exp.generator.eval()
    fake = exp.generator(fixed_z)
    plotter.images("Generated", fake, mean=exp.mean, std=exp.std)
    folder = os.path.join("results", f"DFAD-{exp.name}", "samples")
    logger.save_grid(denormalize(fake, exp.mean, exp.std), os.path.join(folder, f"generated_epoch{epoch:03d}.png"))
    if real_images is not None:
        plotter.images("Test_inputs", real_images, mean=exp.mean, std=exp.std)
        logger.save_grid(denormalize(real_images, exp.mean, exp.std), os.path.join(folder, "test_inputs.png"))


def step_lr(step_size, gamma=0.1):
    """Scheduler factory: both players' learning rates x``gamma`` every ``step_size`` epochs."""
    return lambda *optimizers: [torch.optim.lr_scheduler.StepLR(o, step_size, gamma) for o in optimizers]


def multistep_lr(milestones, gamma=0.1):
    """Scheduler factory: both players' learning rates x``gamma`` at each milestone epoch."""
    return lambda *optimizers: [torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma) for o in optimizers]


def build_optimizers(args, student, generator):
    optimizer_S = torch.optim.SGD(student.parameters(), lr=args.lr_S,
                                  weight_decay=args.weight_decay, momentum=args.momentum)
    optimizer_G = torch.optim.Adam(generator.parameters(), lr=args.lr_G)
    return optimizer_S, optimizer_G


def prepare_models(args, exp, device):
    """Device, memory format and compilation of the three players.

    Returns the modules the loop calls; ``exp``'s own modules stay uncompiled, so
    their state_dicts keep the reference keys.
    """
    memory_format = torch.channels_last if getattr(args, "channels_last", False) else torch.preserve_format
    for model in (exp.teacher, exp.student, exp.generator):
        model.to(device, memory_format=memory_format)
    freeze(exp.teacher)
    teacher, student, generator = exp.teacher, exp.student, exp.generator
    if distributed.world_size() > 1 and device.type == "cuda":
        # A batch split over N GPUs is normalised as the whole batch would be on one.
        # (SyncBatchNorm needs GPUs; on CPUs each process normalises its own share and
        # DDP copies the first process's running statistics to the others.)
        for model in (student, generator):  # before compiling: layers are replaced in place
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if getattr(args, "compile", False):
        teacher, student, generator = (torch.compile(m) for m in (teacher, student, generator))
    return teacher, distributed.wrap(student, device), distributed.wrap(generator, device)


def build_game(args, exp, device):
    teacher, student, generator = prepare_models(args, exp, device)
    optimizer_S, optimizer_G = build_optimizers(args, exp.student, exp.generator)
    schedulers = exp.make_schedulers(optimizer_S, optimizer_G) if args.scheduler and exp.make_schedulers else []
    game = Game(teacher, student, generator, optimizer_S, optimizer_G, schedulers,
                Precision(getattr(args, "amp", None), device),
                fixed_z=sample_noise(64, args.nz, device),
                batch_size=distributed.local_batch_size(args.batch_size))
    if distributed.world_size() > 1:  # same initial weights everywhere, different noise per process
        torch.manual_seed(args.seed + 1000003 * distributed.rank())
    return game


def save_last(args, exp, game):
    """Write what --resume needs (collective: every process calls it, the first one writes)."""
    rng = distributed.all_gather_object(checkpoint.rng_state())  # each process draws its own noise
    if not distributed.is_main():
        return
    checkpoint.atomic_save({
        "args": vars(args), "student": exp.student.state_dict(), "generator": exp.generator.state_dict(),
        "optimizer_S": game.optimizer_S.state_dict(), "optimizer_G": game.optimizer_G.state_dict(),
        "schedulers": [s.state_dict() for s in game.schedulers], "scalers": game.precision.state_dict(),
        "epoch": game.epoch, "iteration": game.iteration, "best": game.best, "history": game.history,
        "fixed_z": game.fixed_z.cpu(), "rng": rng, "world_size": distributed.world_size(),
        "run_id": game.run_id,
    }, exp.last_ckpt)


def restore_last(args, exp, game, device):
    state = checkpoint.load_last(exp.last_ckpt, args, RESUME_KEYS, checkpoint.DFAD_LAST)
    exp.student.load_state_dict(state["student"])
    exp.generator.load_state_dict(state["generator"])
    game.optimizer_S.load_state_dict(state["optimizer_S"])
    game.optimizer_G.load_state_dict(state["optimizer_G"])
    for scheduler, scheduler_state in zip(game.schedulers, state["schedulers"]):
        scheduler.load_state_dict(scheduler_state)
    game.precision.load_state_dict(state["scalers"])
    game.epoch, game.iteration = state["epoch"], state["iteration"]
    game.best, game.history = state["best"], list(state["history"])
    game.fixed_z = state["fixed_z"].to(device)
    game.run_id = state.get("run_id", game.run_id)
    if state["world_size"] != distributed.world_size():
        raise UserError(f"Cannot resume: the saved run used {state['world_size']} processes, this one "
                        f"{distributed.world_size()}. Resume with the same number of processes.")
    checkpoint.set_rng_state(state["rng"][distributed.rank()])
    if distributed.is_main():
        print(f"Resumed from {exp.last_ckpt}: {game.epoch} epochs and {game.iteration} iterations done, "
              f"best {exp.metric_name} {game.best:.4f}", flush=True)
    checkpoint.apply_changed_hyperparameters(state["args"], args, [
        (game.optimizer_S, {"lr_S": "lr", "momentum": "momentum", "weight_decay": "weight_decay"}),
        (game.optimizer_G, {"lr_G": "lr"})], game.schedulers, announce=distributed.is_main())


def test_only(args, exp, device, plotter):
    """Evaluate a saved student instead of training one."""
    exp.student.to(device)
    checkpoint.load_weights(exp.student, getattr(args, "stu_ckpt", None) or exp.student_ckpt,
                            "student checkpoint", hint="Run this script without --test_only first.")
    scores = exp.evaluate(exp.student, exp.test_loader, device)
    print(logger.format_scores("Student", scores))
    plotter.close()
    return scores[exp.metric_name]


def end_of_epoch(args, exp, game, device, plotter, epoch, losses, timing):
    """Evaluate, keep the best players, plot, print; then save everything to resume."""
    for scheduler in game.schedulers:
        scheduler.step()
    game.epoch, game.iteration = epoch, 0
    if not distributed.is_main():  # only the first process evaluates, plots and saves
        save_last(args, exp, game)
        return
    scores = exp.evaluate(exp.student, exp.test_loader, device)
    score = scores[exp.metric_name]
    game.history.append(score)
    if score > game.best:
        game.best = score
        checkpoint.save_state_dict(exp.student, exp.student_ckpt)
        checkpoint.save_state_dict(exp.generator, exp.generator_ckpt)
    save_last(args, exp, game)

    plotter.scalar(exp.metric_name, epoch, score)
    plotter.scalar("lr_S", epoch, game.optimizer_S.param_groups[0]["lr"])
    plotter.scalar("lr_G", epoch, game.optimizer_G.param_groups[0]["lr"])
    show_samples(exp, plotter, game.fixed_z, next(iter(exp.test_loader))[0][:64] if epoch == 1 else None, epoch)
    for hook in exp.extra_plots:
        hook(exp, plotter, epoch, device)
    epoch_seconds, elapsed, epochs_timed = timing
    print(logger.epoch_line(epoch, args.epochs, *losses, exp.metric_name, score, game.best,
                            epoch_seconds, elapsed, epochs_timed), flush=True)


def run(args, exp, device):
    """Play the game for ``args.epochs`` epochs; returns the best test metric.

    Saves the best student and its generator (bare state_dicts, as the reference) and a
    ``last`` checkpoint to resume from after every epoch, appends the per-epoch metric
    list as one row of ``log/DFAD-<name>.csv`` and ends with ``Best <metric>=<value>``.
    """
    main_process = distributed.is_main()
    plotter = VisdomPlotter(env=f"DFAD-{exp.name}", port=args.visdom_port,
                            enabled=main_process and not args.no_visdom)
    plotter.table("Arguments", vars(args))
    exp.teacher.to(device)
    freeze(exp.teacher)
    divergence.check_teacher(exp.teacher, exp.test_loader, device, getattr(args, "ckpt", None))
    if main_process:
        teacher_scores = exp.evaluate(exp.teacher, exp.test_loader, device)
        print(logger.format_scores("Teacher", teacher_scores), flush=True)
    if args.test_only:
        return test_only(args, exp, device, plotter) if main_process else None

    log_csv, log_json = f"log/DFAD-{exp.name}.csv", f"log/DFAD-{exp.name}.json"
    if main_process:
        preflight.check_outputs(files=[exp.student_ckpt, exp.generator_ckpt, exp.last_ckpt],
                                logs=[log_csv, log_json],
                                folders=[os.path.join("results", f"DFAD-{exp.name}", "samples")])
    game = build_game(args, exp, device)
    if getattr(args, "resume", False):
        with checkpoint.resume_errors(exp.last_ckpt):
            restore_last(args, exp, game, device)

    started, first_epoch = time.time(), game.epoch + 1
    with GracefulStop() as stop:
        for epoch in range(first_epoch, args.epochs + 1):
            stop.raise_if_requested(f"Stopped after epoch {epoch - 1}; saved {exp.last_ckpt}. "
                                    f"Resume with the same command plus --resume.")  # e.g. during evaluation
            epoch_start = time.time()
            losses = train_epoch(args, game, exp.adversarial_loss, device, epoch, plotter, stop)
            if stop.requested:
                save_last(args, exp, game)
                plotter.close()
                raise Interrupted(stop.signum, (
                    f"Stopped at epoch {epoch}, iteration {game.iteration}; saved {exp.last_ckpt}. "
                    f"Resume with the same command plus --resume."))
            timing = (time.time() - epoch_start, time.time() - started, epoch - first_epoch + 1)
            end_of_epoch(args, exp, game, device, plotter, epoch, losses, timing)

    plotter.close()
    if main_process:
        logger.log_run(log_csv, log_json, game.history, {
            "metric": exp.metric_name, "teacher": teacher_scores[exp.metric_name], "best": game.best,
            "last": game.history[-1], "epochs": len(game.history), "seconds": time.time() - started,
            "args": vars(args), "run_id": game.run_id})
        print(f"Best {exp.metric_name}={game.best:.6f}")
    return game.best
