"""The DFAD min-max game, written once for every experiment.

Per outer iteration the student takes ``STUDENT_STEPS`` steps towards the teacher on
fresh generated batches, then the generator takes one step towards samples on which
the two disagree most. An epoch is ``args.epoch_itrs`` outer iterations followed by
an evaluation of the student on the real test set.

What differs between experiments (networks, metric, generator loss, schedule,
checkpoint names) arrives in an :class:`Experiment`; scripts never copy this loop.
"""
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from . import checkpoint, logger
from .visualizer import VisdomPlotter

STUDENT_STEPS = 5


def discrepancy(s_logit, t_logit):
    """Mean absolute error between student and teacher logits (the game's value)."""
    return F.l1_loss(s_logit, t_logit)


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


def student_step(teacher, student, generator, optimizer_S, z):
    """Move the student towards the teacher on one generated batch."""
    with torch.no_grad():  # the generator is not updated here: no graph through it
        fake = generator(z)
        t_logit = teacher(fake)
    optimizer_S.zero_grad(set_to_none=True)
    loss_S = discrepancy(student(fake), t_logit)
    loss_S.backward()
    optimizer_S.step()
    return loss_S.detach()


def generator_step(teacher, student, generator, optimizer_G, z, adversarial_loss):
    """Move the generator towards samples where student and teacher disagree."""
    # Gradients flow through the student to the images, but nobody reads the
    # student's weight gradients here, so they are not computed.
    student.requires_grad_(False)
    try:
        optimizer_G.zero_grad(set_to_none=True)
        fake = generator(z)
        loss_G = adversarial_loss(student(fake), teacher(fake))
        loss_G.backward()
        optimizer_G.step()
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
    student_ckpt: str
    generator_ckpt: str
    adversarial_loss: Callable = adversarial_loss_l1
    make_schedulers: Optional[Callable] = None   # (optimizer_S, optimizer_G) -> [schedulers]
    mean: tuple = (0.5,)            # normalisation of the real inputs, to display images
    std: tuple = (0.5,)
    extra_plots: List[Callable] = field(default_factory=list)  # (exp, plotter, epoch) hooks


def train_epoch(args, exp, optimizer_S, optimizer_G, device, epoch, plotter):
    """One epoch of the game: ``args.epoch_itrs`` x (5 student steps + 1 generator step)."""
    exp.student.train()
    exp.generator.train()
    bar = tqdm(range(args.epoch_itrs), desc=f"epoch {epoch}/{args.epochs}",
               leave=False, disable=None, dynamic_ncols=True)
    for i in bar:
        # Student: imitate the teacher on fresh samples (minimise the discrepancy).
        for _ in range(STUDENT_STEPS):
            z = sample_noise(args.batch_size, args.nz, device)
            loss_S = student_step(exp.teacher, exp.student, exp.generator, optimizer_S, z)

        # Generator: look for samples where the two disagree (maximise it).
        z = sample_noise(args.batch_size, args.nz, device)
        loss_G = generator_step(exp.teacher, exp.student, exp.generator, optimizer_G, z,
                                exp.adversarial_loss)

        if i % args.log_interval == 0 or i == args.epoch_itrs - 1:
            loss_S, loss_G = loss_S.item(), loss_G.item()
            bar.set_postfix(Loss_S=f"{loss_S:.4f}", Loss_G=f"{loss_G:.4f}")
            step = (epoch - 1) * args.epoch_itrs + i
            plotter.scalar("Loss_S", step, loss_S)
            plotter.scalar("Loss_G", step, loss_G)
    return float(loss_S), float(loss_G)


@torch.no_grad()
def show_samples(exp, plotter, fixed_z, real_images):
    """Send a grid of generated samples (fixed noise, so epochs compare) and of real inputs."""
    exp.generator.eval()
    fake = exp.generator(fixed_z)
    plotter.images("Generated", fake, mean=exp.mean, std=exp.std)
    if real_images is not None:
        plotter.images("Test_inputs", real_images, mean=exp.mean, std=exp.std)


def build_optimizers(args, student, generator):
    optimizer_S = torch.optim.SGD(student.parameters(), lr=args.lr_S,
                                  weight_decay=args.weight_decay, momentum=args.momentum)
    optimizer_G = torch.optim.Adam(generator.parameters(), lr=args.lr_G)
    return optimizer_S, optimizer_G


def first_test_batch(loader, n=64):
    images = next(iter(loader))[0]
    return images[:n]


def run(args, exp, device):
    """Play the game for ``args.epochs`` epochs; returns the best test metric.

    Saves the best student and its generator (bare state_dicts, as the reference),
    appends the per-epoch metric list as one row of ``log/DFAD-<name>.csv`` and ends
    with the line ``Best <metric>=<value>``.
    """
    for model in (exp.teacher, exp.student, exp.generator):
        model.to(device)
    freeze(exp.teacher)
    plotter = VisdomPlotter(env=f"DFAD-{exp.name}", port=args.visdom_port,
                            enabled=not args.no_visdom)
    plotter.table("Arguments", vars(args))

    print(logger.format_scores("Teacher", exp.evaluate(exp.teacher, exp.test_loader, device)), flush=True)
    if args.test_only:  # evaluate the saved student instead of training one
        checkpoint.load_weights(exp.student, exp.student_ckpt, "student checkpoint",
                                hint="Run this script without --test_only first.")
        scores = exp.evaluate(exp.student, exp.test_loader, device)
        print(logger.format_scores("Student", scores))
        plotter.close()
        return scores[exp.metric_name]

    optimizer_S, optimizer_G = build_optimizers(args, exp.student, exp.generator)
    schedulers = exp.make_schedulers(optimizer_S, optimizer_G) if args.scheduler and exp.make_schedulers else []
    fixed_z = sample_noise(64, args.nz, device)
    real_images = first_test_batch(exp.test_loader)

    best, history = float("-inf"), []
    started = time.time()
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.time()
        loss_S, loss_G = train_epoch(args, exp, optimizer_S, optimizer_G, device, epoch, plotter)
        for scheduler in schedulers:
            scheduler.step()
        scores = exp.evaluate(exp.student, exp.test_loader, device)
        score = scores[exp.metric_name]
        history.append(score)
        if score > best:
            best = score
            checkpoint.save_state_dict(exp.student, exp.student_ckpt)
            checkpoint.save_state_dict(exp.generator, exp.generator_ckpt)

        plotter.scalar(exp.metric_name, epoch, score)
        plotter.scalar("lr_S", epoch, optimizer_S.param_groups[0]["lr"])
        plotter.scalar("lr_G", epoch, optimizer_G.param_groups[0]["lr"])
        show_samples(exp, plotter, fixed_z, real_images if epoch == 1 else None)
        for hook in exp.extra_plots:
            hook(exp, plotter, epoch)
        print(logger.epoch_line(epoch, args.epochs, loss_S, loss_G, exp.metric_name, score, best,
                                time.time() - epoch_start, time.time() - started), flush=True)

    logger.append_csv_row(f"log/DFAD-{exp.name}.csv", history)
    plotter.close()
    print(f"Best {exp.metric_name}={best:.6f}")
    return best
