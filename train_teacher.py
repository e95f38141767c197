"""Train a classification teacher on real data (the only place DFAD sees training data).

Saves the best model to ``checkpoint/teacher/<dataset>-<model>.pt`` as a bare
state_dict, the format of the published teachers, and ends with ``Best Acc=<float>``.
"""
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import network
from dataloader import get_dataloader
from utils import checkpoint, cli, logger
from utils.metrics import evaluate_classifier
from utils.misc import UserError
from utils.visualizer import VisdomPlotter

NUM_CLASSES = {"mnist": 10, "digits": 10}
MODELS = {"lenet5": lambda num_classes: network.lenet.LeNet5()}
MODEL_DATASETS = {"lenet5": ("mnist", "digits")}


def get_args_parser():
    parser = cli.new_parser("Train a DFAD teacher")
    cli.add_common_args(parser, batch_size=256, test_batch_size=128, epochs=30, weight_decay=5e-4,
                        dataset="mnist", datasets=sorted(NUM_CLASSES), step_size=50)
    parser.add_argument("--lr", type=cli.positive_float, default=0.1, help="SGD learning rate")
    parser.add_argument("--model", default="lenet5", choices=sorted(MODELS), help="teacher network")
    parser.add_argument("--num_classes", type=cli.positive_int, default=None,
                        help="number of classes (default: the data set's)")
    parser.add_argument("--ckpt", default=None,
                        help="weights to start from; with --test_only, the weights to evaluate "
                             "(default: checkpoint/teacher/<dataset>-<model>.pt)")
    return parser


def check_args(args):
    expected = NUM_CLASSES[args.dataset]
    if args.num_classes is not None and args.num_classes != expected:
        raise UserError(f"--num_classes {args.num_classes} does not match --dataset {args.dataset}, "
                        f"which has {expected} classes.")
    args.num_classes = expected
    if args.dataset not in MODEL_DATASETS[args.model]:
        raise UserError(f"--model {args.model} is for {', '.join(MODEL_DATASETS[args.model])}, "
                        f"not --dataset {args.dataset}.")


def train(args, model, device, train_loader, optimizer, epoch, plotter):
    model.train()
    bar = tqdm(train_loader, desc=f"epoch {epoch}/{args.epochs}", leave=False, disable=None)
    for i, (images, targets) in enumerate(bar):
        images, targets = images.to(device), targets.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        if i % args.log_interval == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            plotter.scalar("Loss", (epoch - 1) * len(train_loader) + i, loss.item())
    return loss.item()


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    check_args(args)
    device = cli.setup(args)
    save_path = f"checkpoint/teacher/{args.dataset}-{args.model}.pt"
    train_loader, test_loader = get_dataloader(args)
    model = MODELS[args.model](args.num_classes)
    if args.ckpt or args.test_only:
        checkpoint.load_weights(model, args.ckpt or save_path, "teacher checkpoint",
                                hint="Train one with this script (without --test_only).")
    model.to(device)

    if args.test_only:
        print(logger.format_scores("Teacher", evaluate_classifier(model, test_loader, device)))
        return

    plotter = VisdomPlotter(env=f"teacher-{args.dataset}", port=args.visdom_port, enabled=not args.no_visdom)
    plotter.table("Arguments", vars(args))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, args.step_size, 0.1) if args.scheduler else None

    best_acc, started = 0.0, time.time()
    for epoch in range(1, args.epochs + 1):
        loss = train(args, model, device, train_loader, optimizer, epoch, plotter)
        if scheduler:
            scheduler.step()
        scores = evaluate_classifier(model, test_loader, device)
        if scores["Acc"] > best_acc:
            best_acc = scores["Acc"]
            checkpoint.save_state_dict(model, save_path)
        plotter.scalar("Acc", epoch, scores["Acc"])
        elapsed = time.time() - started
        print(f"Epoch {epoch}/{args.epochs}  loss={loss:.4f}  test Loss={scores['Loss']:.4f}  "
              f"Acc={scores['Acc']:.4f} (best {best_acc:.4f})  elapsed {logger.format_seconds(elapsed)}  "
              f"ETA {logger.format_seconds(elapsed / epoch * (args.epochs - epoch))}", flush=True)
    plotter.close()
    print(f"Best Acc={best_acc:.6f}")
    return best_acc


if __name__ == "__main__":
    cli.main_guard(main)
