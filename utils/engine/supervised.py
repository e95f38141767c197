"""Supervised training of a teacher on real data, shared by train_teacher*.py.

SGD with momentum, an optional StepLR, the best model saved as a bare state_dict (the
format of the published teachers), a ``last`` checkpoint after every epoch for
``--resume``, a clean stop on SIGINT/SIGTERM, and data-parallel runs under torchrun.
"""
import os
import time
import uuid

import torch

from ..reporting import records
from ..reporting.progress import EpochProgress
from ..reporting.visdom import VisdomPlotter
from ..runtime import checkpoint, cli, distributed
from ..runtime.signals import GracefulStop, Interrupted
from ..runtime.speed import Precision
from . import diagnostics

# Other values: another run. A scheduler's saved state fits only a scheduler of its kind
# (train_teacher.py's --lr_schedule and --milestones; None for a script without them).
RESUME_KEYS = ("dataset", "model", "num_classes", "batch_size", "lr_schedule", "milestones")
LAST_LAYOUT = 2  # of a teacher's -last.pt; a file of another layout is refused
LAST_SCHEMA = {"args": dict, "layout": int, "model": dict, "optimizer": dict, "scheduler": (dict, type(None)),
               "scalers": dict, "progress": dict, "rng": list, "shuffle": (torch.Tensor, type(None))}


def train_epoch(args, model, loader, optimizer, loss_fn, precision, device, epoch, plotter, stop):
    """One epoch; returns the last loss and whether every process agreed to stop."""
    model.train()
    shown = EpochProgress(f"epoch {epoch}/{args.epochs}", "step", len(loader), enabled=distributed.is_main(),
                          refresh_every=args.log_interval)
    loss, stopping = torch.tensor(float("nan")), False
    for i, (images, targets) in enumerate(loader):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = loss_fn(model(images), targets)
        precision.scale(loss, "model").backward()
        precision.step(optimizer, "model")
        shown.update(i + 1, loss=loss)
        if i % args.log_interval == 0:
            plotter.scalar("Loss", (epoch - 1) * len(loader) + i, loss.item())
        stopping = stop.follow(*distributed.agree(not stop.requested))  # every process stops at the same step
        if stopping:
            break
    shown.close()
    return loss.item(), stopping


def last_checkpoint(save_path):
    """Where the run saving its best model to ``save_path`` keeps what --resume needs."""
    return save_path[:-len(".pt")] + "-last.pt"


def save_path(args):
    """Where a teacher script saves its best model (the reference's names); call it first:
    a new run must not silently replace the ``-last.pt`` of an unfinished one there
    (see :func:`checkpoint.protect_resume_point`)."""
    path = cli.teacher_checkpoint(args.dataset, args.model)
    if distributed.is_main():
        checkpoint.protect_resume_point(last_checkpoint(path), args)
    return path


def resumable_parts(model, optimizer, scheduler, precision):
    """What --resume restores, by checkpoint key (the layout of ``-last.pt``)."""
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scalers": precision}


def save_last(path, args, parts, progress, loader):
    shuffle = loader.generator.get_state() if loader.generator is not None else None
    checkpoint.save_training_state(path, args, parts, progress=dict(progress), shuffle=shuffle,
                                   layout=LAST_LAYOUT)


def restore_last(path, args, parts, loader):
    state = checkpoint.restore_training_state(path, args, RESUME_KEYS, parts, LAST_SCHEMA, LAST_LAYOUT)
    if state["shuffle"] is not None and loader.generator is not None:
        loader.generator.set_state(state["shuffle"])
    if distributed.is_main():
        print(f"Resumed from {path}: {state['progress']['epoch']} epochs done, "
              f"best {state['progress']['best']:.4f}", flush=True)
    checkpoint.apply_changed_hyperparameters(state["args"], args, [
        (parts["optimizer"], {"lr": "lr", "momentum": "momentum", "weight_decay": "weight_decay"})],
        [parts["scheduler"]] if parts["scheduler"] else [], announce=distributed.is_main())
    return dict(state["progress"])


def log_paths(args):
    """The teacher run's CSV row (test metric per epoch) and JSON record, as the DFAD scripts keep theirs."""
    name = os.path.join("log", f"teacher-{args.dataset}-{args.model}")
    return name + ".csv", name + ".json"


def log_teacher(args, progress, metric_name, save_path, seconds, origin):
    """The teacher's record: its curve, arguments, environment and the SHA-256 of the saved
    teacher, which the records of the DFAD runs distilling it name."""
    history = progress["history"]
    records.log_run(*log_paths(args), history, {
        "metric": metric_name, "best": progress["best"], "last": history[-1] if history else None,
        "epochs": len(history), "seconds": seconds, "args": records.portable(vars(args)),
        "run_id": progress["run_id"], "history": history, "teacher_file": records.portable(save_path),
        "teacher_sha256": records.file_sha256(save_path), **origin})


def fit(args, model, train_loader, test_loader, device, *, loss_fn, evaluate, metric_name, save_path,
        gamma=0.1, make_scheduler=None):
    """Train ``model`` for ``args.epochs`` epochs; returns the best test metric.

    ``evaluate(model, loader, device)`` returns a dict holding ``metric_name``; with
    ``--scheduler`` the learning rate is multiplied by ``gamma`` every ``--step_size`` epochs,
    or follows ``make_scheduler(optimizer)`` when given (an LR scheduler stepped once per epoch).
    """
    main_process = distributed.is_main()
    last_path = last_checkpoint(save_path)
    if main_process:
        checkpoint.check_outputs(files=[save_path, last_path, *log_paths(args)])
        records.check_logs(*log_paths(args))
    plotter = VisdomPlotter(env=f"teacher-{args.dataset}", port=args.visdom_port,
                            enabled=main_process and not args.no_visdom)
    plotter.table("Arguments", vars(args))
    model.to(device, memory_format=torch.channels_last if args.channels_last else torch.preserve_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    make_scheduler = make_scheduler or (
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, args.step_size, gamma))
    scheduler = make_scheduler(optimizer) if args.scheduler else None
    precision = Precision(args.amp, device)
    parts = resumable_parts(model, optimizer, scheduler, precision)
    progress = {"epoch": 0, "best": float("-inf"), "history": [], "run_id": uuid.uuid4().hex}
    if args.resume:
        progress = restore_last(last_path, args, parts, train_loader)
    done = progress["epoch"]
    origin = records.provenance(args, device) if main_process else None
    trained = distributed.wrap(torch.compile(model) if args.compile else model, device)

    started = time.time()
    with GracefulStop() as stop:
        for epoch in range(done + 1, args.epochs + 1):
            stop.raise_if_requested(f"Stopped after epoch {epoch - 1}; saved {last_path}. "
                                    f"Resume with the same command plus --resume.")  # e.g. during evaluation
            if hasattr(train_loader.sampler, "set_epoch"):  # DistributedSampler: a new shuffle per epoch
                train_loader.sampler.set_epoch(epoch)
            loss, stopped = train_epoch(args, trained, train_loader, optimizer, loss_fn, precision, device, epoch,
                                        plotter, stop)
            diagnostics.check_teacher_training(model, loss, epoch)
            if stopped:
                # The interrupted epoch is redone on resume, from the weights reached so far.
                save_last(last_path, args, parts, progress, train_loader)
                plotter.close()
                raise Interrupted(stop.signum, f"Stopped during epoch {epoch}; saved {last_path}. "
                                                     f"Resume with the same command plus --resume.")
            if scheduler:
                scheduler.step()
            if main_process:
                scores = evaluate(model, test_loader, device)
                score = scores[metric_name]
                progress["history"].append(score)
                if score > progress["best"]:
                    progress["best"] = score
                    checkpoint.save_state_dict(model, save_path)
                plotter.scalar(metric_name, epoch, score)
            progress["epoch"] = epoch
            save_last(last_path, args, parts, progress, train_loader)
            if main_process:
                elapsed = time.time() - started
                print(f"Epoch {epoch}/{args.epochs}  loss={loss:.4f}  {records.format_scores('test', scores)}  "
                      f"(best {metric_name} {progress['best']:.4f})  elapsed {records.format_seconds(elapsed)}  ETA "
                      f"{records.format_seconds(elapsed / (epoch - done) * (args.epochs - epoch))}", flush=True)
    plotter.close()
    if main_process:
        log_teacher(args, progress, metric_name, save_path, time.time() - started, origin)
        print(f"Best {metric_name}={progress['best']:.6f}")
    return progress["best"]
