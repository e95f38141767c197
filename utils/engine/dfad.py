"""The DFAD training loop, written once for every experiment.

An epoch is ``args.epoch_itrs`` rounds of the game (``game.play_round``: five student
steps, one generator step), then an evaluation of the student on the real test set.
What differs between experiments (networks, metric, generator loss, schedule) arrives in
an :class:`Experiment`, which each ``DFAD_<x>.py`` script declares; scripts never copy
this loop.
"""
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.nn as nn
from tqdm import tqdm

from ..reporting import records
from ..reporting.images import denormalize, save_grid, save_predictions
from ..reporting.progress import ProgressLines
from ..reporting.visdom import VisdomPlotter
from ..runtime import checkpoint, distributed, preflight
from ..runtime.precision import Precision
from ..runtime.signals import GracefulStop, Interrupted
from . import divergence, methods
from .game import Players, adversarial_loss_l1, freeze, play_round, sample_noise

# A run resumed under other values would be another run: other players, another game,
# or (batch size, rounds per epoch) a per-epoch history and a record that mix two runs.
# The values are those of a checkpoint written before --method and --transfer_set existed.
RESUME_KEYS = {"dataset": None, "model": None, "nz": None, "method": "dfad", "transfer_set": None,
               "batch_size": None, "epoch_itrs": None}
POOL_SNAPSHOTS = 16  # the label-free pool: the fixed-noise images of the last 16 epochs' generators


@dataclass
class Experiment:
    """Everything that makes one DFAD experiment different from another.

    ``teacher``, ``student`` and ``generator`` are the raw modules, whose state_dicts
    carry the reference keys; the loop may train wrapped copies of them (DDP, compile).
    """

    dataset: str                    # env DFAD-<dataset>, log/DFAD-<dataset>.csv
    student_name: str               # checkpoint/student/<dataset>-<student_name>[-generator].pt
    teacher: nn.Module
    student: nn.Module
    generator: nn.Module
    test_loader: object
    evaluate: Callable              # (model, loader, device) -> {metric_name: value, ...}
    metric_name: str                # key of evaluate()'s result that picks the best student
    adversarial_loss: Callable = adversarial_loss_l1
    make_schedulers: Optional[Callable] = None   # (optimizer_S, optimizer_G) -> [schedulers]
    mean: tuple = (0.5,)            # normalisation of the real inputs, to display images
    std: tuple = (0.5,)
    extra_plots: List[Callable] = field(default_factory=list)  # (exp, plotter, epoch, device) hooks
    student_ckpt: str = ""          # set only to override the reference's names
    generator_ckpt: str = ""
    start_from: str = ""            # --stu_ckpt: student (and generator beside it) to start from;
                                    # with --test_only, the student to evaluate
    save_img: bool = False          # --save_img: write the best student's test predictions
    transfer_set: object = None     # --method kd: a data set of (image, label), or a function
                                    # that loads it (only kd calls it); its labels are never read
    method: str = "dfad"            # --method: a baseline's files and env carry its name, so it
                                    # never overwrites the DFAD student

    def __post_init__(self):
        # The reference's checkpoint names, decided here once for every script.
        self.student_ckpt = self.student_ckpt or f"checkpoint/student/{self.dataset}-{self.student_name}{self.suffix}.pt"
        self.generator_ckpt = self.generator_ckpt or self.student_ckpt[:-len(".pt")] + "-generator.pt"

    @property
    def suffix(self):
        return "" if self.method == "dfad" else f"-{self.method}"

    @property
    def run_name(self):
        """DFAD-<dataset> (the reference's env and log name), DFAD-<dataset>-<method> for a baseline."""
        return f"DFAD-{self.dataset}{self.suffix}"

    @property
    def results_folder(self):
        """results/<run_name>/: a baseline's images never overwrite the DFAD run's."""
        return os.path.join("results", self.run_name)

    @property
    def samples_folder(self):
        return os.path.join(self.results_folder, "samples")

    @property
    def predictions_folder(self):
        """Where --save_img writes the test predictions ("" without --save_img)."""
        return self.results_folder if self.save_img else ""

    @property
    def uses_generator(self):
        """kd learns on real images and its generator never plays: its weights and samples
        are neither saved nor shown, as they would pass for the run's."""
        return self.method != "kd"

    @property
    def last_ckpt(self):
        """Everything needed to resume, rewritten after every epoch."""
        return self.student_ckpt[:-len(".pt")] + "-last.pt"

    @property
    def labelfree_ckpt(self):
        """The student chosen without labels (highest agreement with the teacher on the pool)."""
        return self.student_ckpt[:-len(".pt")] + "-labelfree.pt"


def last_checkpoint(args):
    """The ``-last.pt`` a DFAD script's run under ``args`` writes (scripts name the student
    after --model): the names :class:`Experiment` gives, without building any network."""
    return Experiment(args.dataset, args.model, None, None, None, None, None, "", method=args.method).last_ckpt


@dataclass
class Game:
    """The players as the loop trains them, and the run's progress."""

    players: Players
    schedulers: list
    fixed_z: torch.Tensor           # noise of the sample grids, the same every epoch
    batch_size: int                 # this process's share of --batch_size
    epoch: int = 0                  # completed epochs
    iteration: int = 0              # completed rounds of the next epoch (after an interruption)
    best: float = -math.inf
    history: list = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # a finished run is logged once
    pool: list = field(default_factory=list)          # label-free pool: probe images of recent epochs
    labelfree: dict = field(default_factory=lambda: {"epoch": 0, "agreement": -math.inf, "test": None})
    diagnostics: list = field(default_factory=list)   # per epoch: class entropy, fraction, agreement


def check_round(epoch, i, loss_S, loss_G, stop):
    """The one collective of a round: all processes learn together whether any player
    diverged anywhere or any process was asked to stop, so that all stop at the same
    round. It costs one all-reduce of two numbers (tens of microseconds) and a host
    sync (the losses are read), nothing in a world of one."""
    finite = bool(torch.isfinite(torch.stack([loss_S.float(), loss_G.float()])).all())
    all_finite, none_stopping = distributed.agree(finite, not stop.requested)
    divergence.check_round(epoch, i, loss_S, loss_G, all_finite)
    stop.follow(none_stopping)


def train_epoch(args, game, device, epoch, plotter, stop):
    """Rounds ``game.iteration .. args.epoch_itrs`` of one epoch of the game.

    Returns the last losses; ``game.iteration`` counts the rounds done (it is short of
    ``epoch_itrs`` only when a stop was requested).
    """
    game.players.student.train()
    game.players.generator.train()
    bar = tqdm(range(game.iteration, args.epoch_itrs), desc=f"epoch {epoch}/{args.epochs}",
               leave=False, disable=None if distributed.is_main() else True, dynamic_ncols=True,
               initial=game.iteration, total=args.epoch_itrs)
    progress = ProgressLines(f"epoch {epoch}/{args.epochs}", "round", args.epoch_itrs, done=game.iteration,
                             enabled=distributed.is_main())
    loss_S = loss_G = torch.tensor(float("nan"))
    for i in bar:
        loss_S, loss_G = play_round(game.players, game.batch_size, args.nz, device)
        check_round(epoch, i, loss_S, loss_G, stop)
        game.iteration = i + 1
        if progress.due():
            progress.show(i + 1, Loss_S=loss_S.item(), Loss_G=loss_G.item())
        if i % args.log_interval == 0 or i == args.epoch_itrs - 1:
            bar.set_postfix(Loss_S=f"{loss_S.item():.4f}", Loss_G=f"{loss_G.item():.4f}")
            step = (epoch - 1) * args.epoch_itrs + i
            plotter.scalar("Loss_S", step, loss_S.item())
            plotter.scalar("Loss_G", step, loss_G.item())
        if stop.requested:
            break
    bar.close()
    return loss_S.item(), loss_G.item()


@torch.no_grad()
def fixed_noise_samples(exp, fixed_z):
    """This epoch's generator on the fixed noise (eval mode): the sample grid, the
    collapse diagnostics and the label-free pool all read these."""
    exp.generator.eval()
    return exp.generator(fixed_z)


def show_samples(exp, plotter, fake, real_images, epoch):
    """A grid of generated samples (fixed noise, so epochs compare) and of real inputs,
    sent to visdom and written to ``exp.samples_folder`` (there even without a server)."""
    folder = exp.samples_folder
    if exp.uses_generator:
        plotter.images("Generated", fake, mean=exp.mean, std=exp.std)
        save_grid(denormalize(fake, exp.mean, exp.std), os.path.join(folder, f"generated_epoch{epoch:03d}.png"))
    if real_images is not None:
        plotter.images("Test_inputs", real_images, mean=exp.mean, std=exp.std)
        save_grid(denormalize(real_images, exp.mean, exp.std), os.path.join(folder, "test_inputs.png"))


def step_lr(step_size, gamma=0.1):
    """Scheduler factory: both players' learning rates x``gamma`` every ``step_size`` epochs."""
    return lambda *optimizers: [torch.optim.lr_scheduler.StepLR(o, step_size, gamma) for o in optimizers]


def multistep_lr(milestones, gamma=0.1):
    """Scheduler factory: both players' learning rates x``gamma`` at each milestone epoch."""
    return lambda *optimizers: [torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma) for o in optimizers]


def build_optimizers(args, student, generator):
    if args.optimizer_S == "adam":  # DAFL's MNIST recipe
        optimizer_S = torch.optim.Adam(student.parameters(), lr=args.lr_S, weight_decay=args.weight_decay)
    else:
        optimizer_S = torch.optim.SGD(student.parameters(), lr=args.lr_S,
                                      weight_decay=args.weight_decay, momentum=args.momentum)
    optimizer_G = torch.optim.Adam(generator.parameters(), lr=args.lr_G)
    return optimizer_S, optimizer_G


def prepare_models(args, exp, device):
    """Device, memory format and compilation of the three players.

    Returns the modules the loop calls (possibly compiled and wrapped for DDP);
    ``exp``'s raw modules stay as they are, so their state_dicts keep the reference keys.
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
    return teacher, distributed.wrap(student, device), distributed.wrap(generator, device)


def build_game(args, exp, device):
    teacher, student, generator = prepare_models(args, exp, device)
    optimizer_S, optimizer_G = build_optimizers(args, exp.student, exp.generator)
    schedulers = exp.make_schedulers(optimizer_S, optimizer_G) if args.scheduler and exp.make_schedulers else []
    players = Players(teacher, student, generator, optimizer_S, optimizer_G, exp.adversarial_loss,
                      Precision(args.amp, device))
    game = Game(players, schedulers, fixed_z=sample_noise(64, args.nz, device),
                batch_size=distributed.local_batch_size(args.batch_size))
    players.method = methods.build(args, exp, game.batch_size)  # None for dfad
    if distributed.world_size() > 1:  # same initial weights everywhere, different noise per process
        torch.manual_seed(args.seed + 1000003 * distributed.rank())
    return game


def resumable_parts(exp, game):
    """What --resume restores, by checkpoint key (the layout of ``-last.pt``)."""
    p = game.players
    return {"student": exp.student, "generator": exp.generator, "optimizer_S": p.optimizer_S,
            "optimizer_G": p.optimizer_G, "schedulers": game.schedulers, "scalers": p.precision}


def save_last(args, exp, game):
    """Write what --resume needs (collective: every process calls it, the first one writes)."""
    checkpoint.save_training_state(
        exp.last_ckpt, args, resumable_parts(exp, game), epoch=game.epoch, iteration=game.iteration,
        best=game.best, history=game.history, fixed_z=game.fixed_z.cpu(), run_id=game.run_id,
        pool=[x.cpu() for x in game.pool], labelfree=game.labelfree, diagnostics=game.diagnostics)


def restore_last(args, exp, game, device):
    state = checkpoint.restore_training_state(exp.last_ckpt, args, RESUME_KEYS, resumable_parts(exp, game),
                                              checkpoint.DFAD_LAST)
    game.epoch, game.iteration = state["epoch"], state["iteration"]
    game.best, game.history = state["best"], list(state["history"])
    game.fixed_z = state["fixed_z"].to(device)
    game.run_id = state.get("run_id", game.run_id)
    game.pool = [x.to(device) for x in state.get("pool", [])]
    game.labelfree = dict(state.get("labelfree", game.labelfree))
    game.diagnostics = list(state.get("diagnostics", []))
    if distributed.is_main():
        print(f"Resumed from {exp.last_ckpt}: {game.epoch} epochs and {game.iteration} iterations done, "
              f"best {exp.metric_name} {game.best:.4f}", flush=True)
    checkpoint.apply_changed_hyperparameters(state["args"], args, [
        (game.players.optimizer_S, {"lr_S": "lr", "momentum": "momentum", "weight_decay": "weight_decay"}),
        (game.players.optimizer_G, {"lr_G": "lr"})], game.schedulers, announce=distributed.is_main())


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


def test_only(args, exp, device, plotter):
    """Evaluate a saved student instead of training one."""
    exp.student.to(device)
    checkpoint.load_weights(exp.student, exp.start_from or args.eval_ckpt or exp.student_ckpt,
                            "student checkpoint",
                            hint="Run this script without --test_only first.")
    scores = exp.evaluate(exp.student, exp.test_loader, device)
    print(records.format_scores("Student", scores))
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
        generator = [(exp.generator, exp.generator_ckpt)] if exp.uses_generator else []
        checkpoint.save_state_dicts([(exp.student, exp.student_ckpt), *generator])
    samples = fixed_noise_samples(exp, game.fixed_z)
    diagnostics = label_free_and_collapse(exp, game, epoch, score, samples)
    save_last(args, exp, game)

    plotter.scalar(exp.metric_name, epoch, score)
    plotter.scalar("lr_S", epoch, game.players.optimizer_S.param_groups[0]["lr"])
    plotter.scalar("lr_G", epoch, game.players.optimizer_G.param_groups[0]["lr"])
    plotter.scalar("Class_entropy", epoch, diagnostics["entropy"])
    plotter.scalar("Classes_predicted", epoch, diagnostics["fraction"])
    plotter.scalar("Teacher_agreement", epoch, diagnostics["agreement"])
    show_samples(exp, plotter, samples, next(iter(exp.test_loader))[0][:64] if epoch == 1 else None, epoch)
    for hook in exp.extra_plots:
        hook(exp, plotter, epoch, device)
    epoch_seconds, elapsed, epochs_timed = timing
    print(records.epoch_line(epoch, args.epochs, *losses, exp.metric_name, score, game.best,
                            epoch_seconds, elapsed, epochs_timed), flush=True)
    previous = game.diagnostics[-2]["collapsed"] if len(game.diagnostics) > 1 else False
    if diagnostics["collapsed"] and not previous:
        classes = diagnostics["classes"]
        print(f"Warning: mode collapse at epoch {epoch}: the teacher predicts {classes} "
              f"class{'es' if classes != 1 else ''} ({diagnostics['fraction']:.0%}) on the generated samples, "
              f"class entropy {diagnostics['entropy']:.2f} of its maximum.", flush=True)


@torch.no_grad()
def label_free_and_collapse(exp, game, epoch, score, samples):
    """Collapse diagnostics on this epoch's probe images, and the label-free choice of a
    student: the one that agrees most with the teacher (argmax) on the pool of probe
    images of the last POOL_SNAPSHOTS epochs' generators (kd: its fixed probe), the later
    one on a tie. Saved as ``-labelfree.pt``."""
    method = game.players.method
    images = methods.probe_images(method, samples)
    if images[0].numel() > methods.LARGE_IMAGE:  # large (segmentation) images: 16 a snapshot keep it cheap
        images = images[:16]
    stats = methods.class_histogram_stats(exp.teacher(images))
    game.pool = methods.label_free_pool(method, game.pool, images, POOL_SNAPSHOTS)
    training = exp.student.training
    exp.student.eval()
    stats["agreement"] = methods.agreement(exp.student, exp.teacher, torch.cat(game.pool))
    exp.student.train(training)
    stats["epoch"] = epoch
    game.diagnostics.append(stats)
    if stats["agreement"] >= game.labelfree["agreement"]:  # a tie: the student trained longer
        game.labelfree = {"epoch": epoch, "agreement": stats["agreement"], "test": score}
        checkpoint.save_state_dict(exp.student, exp.labelfree_ckpt)
    return stats


def run(args, exp, device):
    """Play the game for ``args.epochs`` epochs; returns the best test metric.

    Saves the best student and its generator (bare state_dicts, as the reference; kd: the
    student alone) and a
    ``last`` checkpoint to resume from after every epoch, appends the per-epoch metric
    list as one row of ``log/DFAD-<dataset>.csv`` and ends with ``Best <metric>=<value>``.
    """
    main_process = distributed.is_main()
    if main_process:  # before the teacher is evaluated or anything is trained
        checkpoint.protect_resume_point(exp.last_ckpt, args)
    plotter = VisdomPlotter(env=exp.run_name, port=args.visdom_port,
                            enabled=main_process and not args.no_visdom)
    plotter.table("Arguments", vars(args))
    exp.teacher.to(device)
    freeze(exp.teacher)
    divergence.check_teacher(exp.teacher, exp.test_loader, device, args.ckpt)
    if main_process:
        teacher_scores = exp.evaluate(exp.teacher, exp.test_loader, device)
        print(records.format_scores("Teacher", teacher_scores), flush=True)
    if args.test_only:
        score = test_only(args, exp, device, plotter) if main_process else None
        if exp.predictions_folder and main_process:
            save_predictions(exp, device, exp.predictions_folder)
        return score

    log_csv, log_json = f"log/{exp.run_name}.csv", f"log/{exp.run_name}.json"
    if main_process:
        generator = [exp.generator_ckpt] if exp.uses_generator else []
        preflight.check_outputs(files=[exp.student_ckpt, *generator, exp.last_ckpt, exp.labelfree_ckpt],
                                logs=[log_csv, log_json],
                                folders=[exp.samples_folder, *filter(None, [exp.predictions_folder])])
    if exp.start_from:
        warm_start(exp, exp.start_from)
    game = build_game(args, exp, device)
    if args.resume:
        restore_last(args, exp, game, device)

    started, first_epoch = time.time(), game.epoch + 1
    with GracefulStop() as stop:
        for epoch in range(first_epoch, args.epochs + 1):
            stop.raise_if_requested(f"Stopped after epoch {epoch - 1}; saved {exp.last_ckpt}. "
                                    f"Resume with the same command plus --resume.")  # e.g. during evaluation
            epoch_start = time.time()
            losses = train_epoch(args, game, device, epoch, plotter, stop)
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
        records.log_run(log_csv, log_json, game.history, {
            "metric": exp.metric_name, "teacher": teacher_scores[exp.metric_name], "best": game.best,
            "last": game.history[-1], "epochs": len(game.history), "seconds": time.time() - started,
            "args": vars(args), "run_id": game.run_id, "method": exp.method, "device": records.device_name(device),
            "labelfree": game.labelfree["test"], "labelfree_epoch": game.labelfree["epoch"],
            "labelfree_agreement": game.labelfree["agreement"], "diagnostics": game.diagnostics,
            "history": game.history})
        lf = game.labelfree
        print(f"Last {exp.metric_name}={game.history[-1]:.6f}; label-free choice: epoch {lf['epoch']}, "
              f"{exp.metric_name}={lf['test']:.6f} (teacher agreement {lf['agreement']:.4f}, {exp.labelfree_ckpt})")
        print(f"Best {exp.metric_name}={game.best:.6f}")
        if exp.predictions_folder:  # the game ends on its last student: show the best one
            checkpoint.load_weights(exp.student, exp.student_ckpt, "student checkpoint")
            save_predictions(exp, device, exp.predictions_folder)
    return game.best
