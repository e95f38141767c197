"""The DFAD training loop, written once for every experiment and every method.

An epoch is ``--epoch_itrs`` rounds of the method (``methods/``: DFAD's round is five
student steps and one generator step), then an evaluation of the student on the real
test set, the best and the last checkpoints, and the report. What differs between
experiments (networks, data, metric, generator loss, schedule) arrives in an
:class:`Experiment`, which each ``DFAD_<x>.py`` script declares.
"""
import functools
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..metrics.classification import evaluate_classifier
from ..reporting import records
from ..reporting.images import denormalize, save_grid
from ..reporting.progress import EpochProgress
from ..reporting.visdom import VisdomPlotter
from ..runtime import checkpoint, distributed
from ..runtime.signals import GracefulStop, Interrupted
from ..runtime.speed import Precision
from . import diagnostics, objective, replay
from .diagnostics import Monitor
from .ema import StudentEMA
from .game import (
    Method,
    Players,
    adversarial_loss_l1,
    discrepancy,
    draw_as_trained,
    freeze,
    kl_divergence,
)
from .graphs import CapturedRound
from .labelfree import Candidates
from .methods import METHODS

# A run resumed under other values would be another run: other players, another game,
# or (batch size, rounds per epoch) a per-epoch history and a record that mix two runs.
RESUME_KEYS = ("dataset", "model", "teacher", "nz", "method", "transfer_set", "batch_size", "epoch_itrs",
               "student_ema", "replay", *objective.TERMS, "adv_loss", "student_loss", "temperature")
LAST_LAYOUT = 2  # of -last.pt: one entry per part of run_state(); a file of another layout is refused
# The types of -last.pt's entries, checked before any of them is used.
LAST_SCHEMA = {"args": dict, "layout": int, "student": dict, "generator": dict, "optimizer_S": dict,
               "optimizer_G": dict, "schedulers": list, "scalers": dict, "progress": dict, "monitor": dict,
               "candidates": dict, "rng": list, "world_size": int}


@dataclass
class Experiment:
    """What makes one DFAD experiment different from another: networks, data, metric.

    ``teacher``, ``student`` and ``generator`` are the raw modules, whose state_dicts
    carry the reference keys; the loop may train wrapped copies of them (DDP, compile).
    """

    dataset: str                    # env DFAD-<dataset>, log/DFAD-<dataset>.csv
    student_name: str               # checkpoint/student/<dataset>-<student_name>[-generator].pt
    teacher: nn.Module
    student: nn.Module
    generator: nn.Module
    test_loader: object
    evaluate: Callable = evaluate_classifier  # (model, loader, device) -> {metric_name: value, ...}
    metric_name: str = "Acc"        # key of evaluate()'s result that picks the best student
    adversarial_loss: Callable = adversarial_loss_l1
    milestones: list | None = None  # --scheduler: x0.1 at these epochs (default: every --step_size)
    mean: tuple = (0.5,)            # normalisation of the real inputs, to display images
    std: tuple = (0.5,)
    extra_plots: list[Callable] = field(default_factory=list)  # (plotter, teacher, student, draw, device);
                                    # draw(z): the generator's images as the student sees them, or None
    transfer_set: object = None     # --method kd: a data set of (image, label), or a function
                                    # that loads it (only kd calls it); its labels are never read
    pair: str | None = None      # "<teacher>-<student>" when not the script's reference pair:
                                    # the results table gives it a row of its own


@dataclass(frozen=True)
class RunFiles:
    """Where a run writes: the reference's names for dfad, the method's suffix for the
    others, so a baseline never overwrites the DFAD run's files."""

    name: str        # DFAD-<dataset>[-<method>]: the visdom env, the logs, results/<name>/
    student: str     # the best student (bare state_dict, as the reference)
    generator: str   # its generator
    last: str        # everything --resume needs, rewritten after every epoch
    labelfree: str   # the student chosen without labels

    @classmethod
    def of(cls, exp, method):
        return cls.named(exp.dataset, exp.student_name, method)

    @classmethod
    def named(cls, dataset, student_name, method):
        stem = f"checkpoint/student/{dataset}-{student_name}{method.suffix()}"
        return cls(f"DFAD-{dataset}{method.suffix()}", f"{stem}.pt", f"{stem}-generator.pt",
                   f"{stem}-last.pt", f"{stem}-labelfree.pt")

    @property
    def logs(self):
        return f"log/{self.name}.csv", f"log/{self.name}.json"

    @property
    def results(self):
        """results/<name>/: sample grids, and --save_img's predictions."""
        return os.path.join("results", self.name)

    @property
    def samples(self):
        return os.path.join(self.results, "samples")

    @property
    def candidates(self):
        """The label-free candidates: the last epochs' students, one file each."""
        return self.last.removesuffix("-last.pt") + "-candidates"


@dataclass
class Run:
    """One run: what it trains, where it writes, how far it has come (all that --resume
    restores)."""

    players: Players
    schedulers: list
    method: Method
    monitor: Monitor                # fixed noise, label-free pool, diagnostics
    files: RunFiles
    epoch: int = 0                  # completed epochs
    iteration: int = 0              # completed rounds of the next epoch (after an interruption)
    best: float = -math.inf
    history: list = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # a finished run is logged once
    ema: StudentEMA | None = None  # --student_ema: the student evaluated, saved and reported
    candidates: Candidates | None = None  # the label-free candidates (run() gives them)

    def reported_student(self, exp):
        """The student that is evaluated, checkpointed and reported: the moving average
        with --student_ema, else the one that plays the game."""
        return self.ema.model if self.ema else exp.student


def last_checkpoint(args):
    """The ``-last.pt`` a DFAD script's run under ``args`` writes (the scripts name the
    student after --model), without building any network."""
    return RunFiles.named(args.dataset, args.model, METHODS[args.method]).last


def run(args, exp, device):
    """Train a student for ``args.epochs`` epochs; returns the best test metric.

    Saves the best student and its generator (bare state_dicts, as the reference), the
    label-free choice, and a ``-last.pt`` to resume from after every epoch; logs the
    per-epoch metric list as one CSV row and a JSON record; ends with ``Best <metric>=<value>``.
    """
    method_class = METHODS[args.method]
    files = RunFiles.of(exp, method_class)
    if distributed.is_main():  # before the teacher is evaluated or anything is trained
        checkpoint.protect_resume_point(files.last, args)
    generator_objective = None
    if method_class.trains_generator:  # a term the teacher cannot serve is refused here
        generator_objective = objective.build(args, exp.teacher, exp.adversarial_loss,
                                              method_class.defaults(args.dataset))
    plotter = VisdomPlotter(env=files.name, port=args.visdom_port,
                            enabled=distributed.is_main() and not args.no_visdom)
    plotter.table("Arguments", vars(args))
    teacher_score = check_teacher(args, exp, device)
    if args.test_only:
        return test_only(args, exp, files, device, plotter)
    if distributed.is_main():
        check_outputs(files, method_class)
    # taken before training: the code and teacher that ran, should either change during the run
    origin = records.provenance(args, device, args.ckpt) if distributed.is_main() else None
    run = start_run(args, exp, device, method_class(args, exp, distributed.local_batch_size(args.batch_size)),
                    files, generator_objective)
    started = time.time()
    play_epochs(args, exp, run, plotter, device, started)
    plotter.close()
    if distributed.is_main():
        choice = run.candidates.choose(exp.teacher, exp.student, run.monitor.pool, run.history, files.labelfree)
        log_run(args, exp, run, choice, teacher_score, time.time() - started, origin)
    return run.best


def start_run(args, exp, device, method, files, generator_objective):
    """The run's players and state, restored from ``-last.pt`` with --resume."""
    players, schedulers = build_players(args, exp, device, generator_objective)
    if args.cuda_graph:  # each round replayed from one CUDA graph (graphs.py)
        method.play_round = CapturedRound(method.play_round)
    if distributed.world_size() > 1:  # same initial weights everywhere, different noise per process
        torch.manual_seed(args.seed + 1000003 * distributed.rank())
    run = Run(players, schedulers, method, Monitor(args.nz, device), files, ema=student_ema(args, exp, players),
              candidates=Candidates(files.candidates, args.labelfree_candidates))
    if args.resume:
        restore_last(args, exp, run)
    return run


def play_epochs(args, exp, run, plotter, device, started):
    """Epochs ``run.epoch + 1 .. args.epochs``: rounds, then (first process) evaluation and
    saving; a stop saves ``-last.pt`` and raises :class:`Interrupted`."""
    first_epoch = run.epoch + 1
    with GracefulStop() as stop:
        for epoch in range(first_epoch, args.epochs + 1):
            stop.raise_if_requested(f"Stopped after epoch {epoch - 1}; saved {run.files.last}. "
                                    f"Resume with the same command plus --resume.")  # e.g. during evaluation
            epoch_start = time.time()
            losses, stopped = train_epoch(args, run, epoch, plotter, stop)
            if stopped:
                save_last(args, exp, run)
                plotter.close()
                raise Interrupted(stop.signum, f"Stopped at epoch {epoch}, iteration {run.iteration}; saved "
                                               f"{run.files.last}. Resume with the same command plus --resume.")
            for scheduler in run.schedulers:
                scheduler.step()
            run.epoch, run.iteration = epoch, 0
            if distributed.is_main():  # only the first process evaluates, plots and saves
                end_of_epoch(exp, run, plotter, device)
                print(records.epoch_line(epoch, args.epochs, *losses, exp.metric_name, run.history[-1], run.best,
                                         time.time() - epoch_start, time.time() - started, epoch - first_epoch + 1),
                      flush=True)
                warning = run.monitor.collapse_warning()
                if warning:
                    print(warning, flush=True)
            save_last(args, exp, run)
            if distributed.is_main():
                run.candidates.prune()


def student_ema(args, exp, players):
    """With --student_ema, the moving average of the student, updated after every student
    step of the game; None without."""
    if not args.student_ema:
        return None
    ema = StudentEMA(exp.student, args.student_ema)
    players.after_student_step = ema.update
    return ema


def train_epoch(args, run, epoch, plotter, stop):
    """Rounds ``run.iteration .. args.epoch_itrs`` of one epoch; returns the last losses and
    whether every process agreed to stop (then ``run.iteration`` may fall short of
    ``epoch_itrs``). A stop requested after the last round's agreement is left to the next
    epoch's start, where all processes agree on it again."""
    run.players.student.train()
    run.players.generator.train()
    batch_size = distributed.local_batch_size(args.batch_size)
    shown = EpochProgress(f"epoch {epoch}/{args.epochs}", "round", args.epoch_itrs, done=run.iteration,
                          enabled=distributed.is_main(), refresh_every=args.log_interval)
    loss_S = loss_G = torch.tensor(float("nan"))
    stopping = False
    for i in range(run.iteration, args.epoch_itrs):
        loss_S, loss_G = run.method.play_round(run.players, batch_size)
        stopping = diagnostics.check_round(epoch, i, loss_S, loss_G, stop)
        run.iteration = i + 1
        shown.update(i + 1, Loss_S=loss_S, Loss_G=loss_G)
        if i % args.log_interval == 0 or i == args.epoch_itrs - 1:
            step = (epoch - 1) * args.epoch_itrs + i
            plotter.scalar("Loss_S", step, loss_S.item())
            plotter.scalar("Loss_G", step, loss_G.item())
        if stopping:
            break
    shown.close()
    return (loss_S.item(), loss_G.item()), stopping


def end_of_epoch(exp, run, plotter, device):
    """Evaluate the student, keep the best one, diagnose the epoch, plot."""
    epoch, files, uses_generator = run.epoch, run.files, run.method.uses_generator
    student = run.reported_student(exp)
    scores = exp.evaluate(student, exp.test_loader, device)
    score = scores[exp.metric_name]
    run.history.append(score)
    if score > run.best:
        run.best = score
        generator = [(exp.generator, files.generator)] if uses_generator else []
        checkpoint.save_state_dicts([(student, files.student), *generator])  # both or neither
    run.candidates.add(student, epoch)
    samples = run.monitor.samples(exp.generator)
    stats = run.monitor.end_of_epoch(exp.teacher, student, run.method.probe_images(samples),
                                     not uses_generator, epoch, score)

    plotter.scalar(exp.metric_name, epoch, score)
    plotter.scalar("lr_S", epoch, run.players.optimizer_S.param_groups[0]["lr"])
    plotter.scalar("lr_G", epoch, run.players.optimizer_G.param_groups[0]["lr"])
    plotter.scalar("Class_entropy", epoch, stats["entropy"])
    plotter.scalar("Classes_predicted", epoch, stats["fraction"])
    plotter.scalar("Teacher_agreement", epoch, stats["agreement"])
    if uses_generator:  # fixed noise, so epochs compare; written even without a server
        plotter.images("Generated", samples, mean=exp.mean, std=exp.std)
        save_grid(denormalize(samples, exp.mean, exp.std), os.path.join(files.samples, f"generated_epoch{epoch:03d}.png"))
    if epoch == 1:
        real = next(iter(exp.test_loader))[0][:64]
        plotter.images("Test_inputs", real, mean=exp.mean, std=exp.std)
        save_grid(denormalize(real, exp.mean, exp.std), os.path.join(files.samples, "test_inputs.png"))
    draw = functools.partial(draw_as_trained, exp.generator) if uses_generator else None
    for hook in exp.extra_plots:
        hook(plotter, exp.teacher, student, draw, device)


def check_teacher(args, exp, device):
    """A broken teacher is named before anything is trained; returns its test score."""
    exp.teacher.to(device)
    freeze(exp.teacher)
    diagnostics.check_teacher(exp.teacher, exp.test_loader, device, args.ckpt)
    if not distributed.is_main():
        return None
    scores = exp.evaluate(exp.teacher, exp.test_loader, device)
    print(records.format_scores("Teacher", scores), flush=True)
    return scores[exp.metric_name]


def test_only(args, exp, files, device, plotter):
    """Evaluate a saved student (--eval_ckpt, else this method's best) instead of training one."""
    plotter.close()
    if not distributed.is_main():
        return None
    exp.student.to(device)
    checkpoint.load_weights(exp.student, args.eval_ckpt or files.student, "student checkpoint",
                            hint="Run this script without --test_only first.")
    scores = exp.evaluate(exp.student, exp.test_loader, device)
    print(records.format_scores("Student", scores))
    return scores[exp.metric_name]


def check_outputs(files, method):
    """Every file the run will write is checked before it trains."""
    generator = [files.generator] if method.uses_generator else []
    checkpoint.check_outputs(files=[files.student, *generator, files.last, files.labelfree, *files.logs],
                            folders=[files.samples, files.candidates])
    records.check_logs(*files.logs)


def schedulers_of(args, exp, optimizers, gamma=0.1):
    """With --scheduler, both players' learning rates x``gamma`` at the experiment's
    milestone epochs, or every ``--step_size`` epochs."""
    if not args.scheduler:
        return []
    if exp.milestones:
        return [torch.optim.lr_scheduler.MultiStepLR(o, exp.milestones, gamma) for o in optimizers]
    return [torch.optim.lr_scheduler.StepLR(o, args.step_size, gamma) for o in optimizers]


def student_loss(args):
    """--student_loss: the L1 of DFAD, or Hinton's KL at --temperature."""
    if args.student_loss == "l1":
        return discrepancy
    return functools.partial(kl_divergence, temperature=args.temperature)


def build_players(args, exp, device, generator_objective=None):
    """The players as the rounds call them, their optimizers and schedulers.

    The modules the rounds call may be compiled and wrapped for DDP; ``exp``'s raw
    modules are the same weights, so their state_dicts keep the reference keys.
    """
    memory_format = torch.channels_last if args.channels_last else torch.preserve_format
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
    if args.compile:
        teacher, student, generator = (torch.compile(m) for m in (teacher, student, generator))
    graph = args.cuda_graph  # Adam's step count on the GPU; autocast without its cache (graphs.py)
    if args.optimizer_S == "adam":  # DAFL's MNIST recipe
        optimizer_S = torch.optim.Adam(exp.student.parameters(), lr=args.lr_S, weight_decay=args.weight_decay,
                                       capturable=graph)
    else:
        optimizer_S = torch.optim.SGD(exp.student.parameters(), lr=args.lr_S,
                                      weight_decay=args.weight_decay, momentum=args.momentum)
    optimizer_G = torch.optim.Adam(exp.generator.parameters(), lr=args.lr_G, capturable=graph)
    schedulers = schedulers_of(args, exp, (optimizer_S, optimizer_G))
    players = Players(teacher, distributed.wrap(student, device), distributed.wrap(generator, device),
                      optimizer_S, optimizer_G, args.nz, device, generator_objective,
                      Precision(args.amp, device, cache_casts=not graph),
                      replay=replay.build(args, METHODS[args.method].uses_generator,
                                          distributed.local_batch_size(args.batch_size)),
                      student_loss=student_loss(args))
    return players, schedulers


class Progress:
    """How far a run has come, as a part of its state: epochs and rounds done, the best
    metric, the per-epoch history and the run's id (a finished run is logged once)."""

    FIELDS = ("epoch", "iteration", "best", "history", "run_id")

    def __init__(self, run):
        self.run = run

    def state_dict(self):
        return {name: getattr(self.run, name) for name in self.FIELDS}

    def load_state_dict(self, state):
        for name in self.FIELDS:
            setattr(self.run, name, state[name])
        self.run.history = list(self.run.history)


class EveryRank:
    """A part each process keeps for itself (--replay's memory): saved as the list of all
    processes' states by rank (collective), each restoring its own."""

    def __init__(self, part):
        self.part = part

    def state_dict(self):
        return distributed.all_gather_object(self.part.state_dict())

    def load_state_dict(self, states):
        self.part.load_state_dict(states[distributed.rank()])


def run_state(exp, run):
    """Every part of a run with state, by its entry in ``-last.pt``: what save_last writes
    and restore_last loads (None: a part this run does not have, e.g. "student_ema" without
    --student_ema; RESUME_KEYS make a resumed run have the same parts)."""
    p = run.players
    return {"student": exp.student, "generator": exp.generator, "optimizer_S": p.optimizer_S,
            "optimizer_G": p.optimizer_G, "schedulers": run.schedulers, "scalers": p.precision,
            "method": run.method, "student_ema": run.ema, "replay": p.replay and EveryRank(p.replay),
            "monitor": run.monitor, "candidates": run.candidates, "progress": Progress(run)}


def save_last(args, exp, run):
    """Write what --resume needs (collective: every process calls it, the first one writes)."""
    checkpoint.save_training_state(run.files.last, args, run_state(exp, run), layout=LAST_LAYOUT)


def restore_last(args, exp, run):
    state = checkpoint.restore_training_state(run.files.last, args, RESUME_KEYS, run_state(exp, run),
                                              LAST_SCHEMA, layout=LAST_LAYOUT)
    if distributed.is_main():
        print(f"Resumed from {run.files.last}: {run.epoch} epochs and {run.iteration} iterations done, "
              f"best {exp.metric_name} {run.best:.4f}", flush=True)
    checkpoint.apply_changed_hyperparameters(state["args"], args, [
        (run.players.optimizer_S, {"lr_S": "lr", "momentum": "momentum", "weight_decay": "weight_decay"}),
        (run.players.optimizer_G, {"lr_G": "lr"})], run.schedulers, announce=distributed.is_main())


def warm_start(exp, stu_ckpt):
    """Start from a saved student and, where it exists, the generator saved beside it."""
    checkpoint.load_weights(exp.student, stu_ckpt, "student checkpoint (--stu_ckpt)")
    print(f"Student restored from {stu_ckpt}", flush=True)
    generator_path = stu_ckpt.removesuffix(".pt") + "-generator.pt"
    if os.path.isfile(generator_path):
        checkpoint.load_weights(exp.generator, generator_path, "generator checkpoint")
        print(f"Generator restored from {generator_path}", flush=True)
    else:
        print(f"No generator checkpoint {generator_path}: the generator starts afresh.", flush=True)


def log_run(args, exp, run, choice, teacher_score, seconds, origin):
    """One CSV row (the reference's per-epoch metric list) and one JSON record per run.
    ``choice``: the label-free choice (``Candidates.choose``), or None; ``origin``
    (:func:`records.provenance`) traces the run to the code, teacher, data and environment."""
    choice, by_agreement = choice or {}, run.monitor.agreement_choice
    records.log_run(*run.files.logs, run.history, {
        "metric": exp.metric_name, "teacher": teacher_score, "best": run.best, "last": run.history[-1],
        "epochs": len(run.history), "seconds": seconds, "args": records.portable(vars(args)), "run_id": run.run_id,
        "method": run.method.name, "pair": exp.pair,
        "labelfree": choice.get("test"),
        "labelfree_epoch": choice.get("epoch"), "labelfree_l1": choice.get("l1"),
        "labelfree_candidates": choice.get("candidates", []), "labelfree_pool_images": choice.get("pool_images", 0),
        "labelfree_by_agreement": by_agreement, "diagnostics": run.monitor.diagnostics, "history": run.history,
        **origin})
    print(f"Last {exp.metric_name}={run.history[-1]:.6f}; {describe_labelfree(choice, exp.metric_name, run.files)}; "
          f"the agreement rule would pick epoch {by_agreement['epoch']}, "
          f"{exp.metric_name}={by_agreement['test']:.6f} (agreement {by_agreement['agreement']:.4f})")
    print(f"Best {exp.metric_name}={run.best:.6f}")


def describe_labelfree(choice, metric_name, files):
    if not choice:
        return f"no label-free choice (no candidate students in {files.candidates})"
    return (f"label-free choice: epoch {choice['epoch']}, {metric_name}={choice['test']:.6f} (mean L1 to the "
            f"teacher {choice['l1']:.6f} on {choice['pool_images']} fixed images, the least of "
            f"{len(choice['candidates'])} candidates; {files.labelfree})")
