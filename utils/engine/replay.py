"""``--replay N``: a memory of past generated images that every student step replays.

Binici et al., "Preventing Catastrophic Forgetting and Distribution Mismatch in Knowledge
Distillation via Synthetic Data" (WACV 2022, arXiv 2108.05698) keep a dynamic collection
of the samples generated over time and train the student on it besides the new ones, so
that it does not forget what earlier generators taught it. The stored copies of the paper
we could read hold its abstract and introduction only; the mechanics and defaults here are
those of the public reimplementation by Patel et al. (CVPR 2023, github.com/gaurav104/LRA,
``configs/MB-DFKD.json`` and ``agents/predfkd_memory.py``), which names itself after it:

- what is stored: the first ``--replay_fraction`` (1/8) of the images of the last student
  step of every ``--replay_every``-th epoch (5; from the first epoch on), as generated
  (no copy of the teacher's outputs: the teacher is asked again when they are replayed);
- where: on the CPU, ``N`` entries at most (10), the oldest replaced first (a ring);
- how replayed: every student step appends one entry, drawn uniformly at random, to its
  fresh images; the loss is the step's own over the whole batch (DFAD: one L1 mean, so a
  replayed image weighs as much as a fresh one).

Choices of ours: "epoch" is this project's (``--epoch_itrs`` rounds of five student
steps); the draw uses a random generator of its own, so turning replay on leaves the
game's noise stream as it is, and nothing changes until the first entry is stored. Under
torchrun each process keeps and replays its own images; ``-last.pt`` holds every
process's memory under ``replay``, a list by rank (``loop.save_last``).
"""
import argparse

import torch

from ..runtime.cli import non_negative_int, positive_int
from ..runtime.errors import UserError
from .game import STUDENT_STEPS

PAPER_SIZE = 10          # entries kept (a bare --replay)
PAPER_FRACTION = 1 / 8   # of a batch, per entry and per replayed draw
PAPER_EVERY = 5          # epochs between two stored entries


def fraction_value(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value


def add_replay_args(parser):
    group = parser.add_argument_group(
        "replay", "Binici et al., WACV 2022: a memory of past generated images, replayed in every "
                  "student step (methods with a generator: dfad, random, dafl, mad)")
    group.add_argument("--replay", type=non_negative_int, nargs="?", const=PAPER_SIZE, default=0, metavar="N",
                       help=f"keep up to N entries of past generated images and append one, drawn at random, "
                            f"to every student step's images; 0: off; a bare --replay: {PAPER_SIZE}. The "
                            f"memory lives on the CPU and in -last.pt: N x (fraction x batch) generated images "
                            f"(as the generator gives them: float32 without --amp), at each script's defaults "
                            f"2.6 MB (MNIST, 512 x 1x32x32), 3.9 MB (CIFAR, 256 x 3x32x32), 16 MB (Caltech101, "
                            f"CamVid, NYUv2: 64 x 3x128x128)")
    group.add_argument("--replay_fraction", type=fraction_value, default=PAPER_FRACTION,
                       help="an entry's size as a fraction of the batch: the images stored at a time, and "
                            "those appended to each student step")
    group.add_argument("--replay_every", type=positive_int, default=PAPER_EVERY,
                       help="store an entry at the end of the 1st epoch and of every this-many epochs after")
    return parser


def build(args, uses_generator, batch_size):
    """The run's memory, or None when ``--replay`` is off (the game is then untouched)."""
    if not args.replay:
        return None
    if not uses_generator:
        raise UserError(f"--replay stores generated images, and --method {args.method} has no generator "
                        f"(it trains on real images). Drop --replay, or use a method with a generator.")
    return Replay(args.replay, max(1, int(args.replay_fraction * batch_size)),
                  STUDENT_STEPS * args.epoch_itrs * args.replay_every, STUDENT_STEPS * args.epoch_itrs,
                  seed=args.seed)


class Replay:
    """A ring of at most ``capacity`` entries of ``entry_size`` images each (on the CPU).

    :meth:`mix` is called with the fresh images of every student step: it returns them
    with one stored entry appended (none while the memory is empty) and, on the last step
    of an epoch that stores, keeps the first ``entry_size`` fresh images."""

    def __init__(self, capacity, entry_size, store_period, steps_per_epoch, seed=0):
        self.capacity, self.entry_size = capacity, entry_size
        self.store_period, self.steps_per_epoch = store_period, steps_per_epoch
        self.entries = []
        self.next_slot = 0      # the ring's oldest entry once it is full
        self.steps = 0          # student steps seen, so resumed runs store when they would have
        self.rng = torch.Generator().manual_seed(seed)

    def mix(self, fresh):
        mixed = fresh if not self.entries else torch.cat([fresh, self.draw().to(fresh.device, fresh.dtype)])
        self.steps += 1
        if self.steps % self.steps_per_epoch == 0 and (self.steps - self.steps_per_epoch) % self.store_period == 0:
            self.store(fresh[:self.entry_size])
        return mixed

    def draw(self):
        return self.entries[int(torch.randint(len(self.entries), (1,), generator=self.rng))]

    def store(self, images):
        images = images.detach().to("cpu", copy=True)
        if len(self.entries) < self.capacity:
            self.entries.append(images)
        else:
            self.entries[self.next_slot] = images
        self.next_slot = (self.next_slot + 1) % self.capacity

    def state_dict(self):
        return {"entries": list(self.entries), "next_slot": self.next_slot, "steps": self.steps,
                "rng": self.rng.get_state()}

    def load_state_dict(self, state):
        self.entries = list(state["entries"])  # the same --replay N: a resumed run cannot change it
        self.next_slot, self.steps = state["next_slot"], state["steps"]
        self.rng.set_state(state["rng"])
