"""The speed flags, and the defaults that keep the method's fp32 math, per device type and
experiment, each resting on a measurement docs/speed.md shows.

Left unset, ``--channels_last`` / ``--no_channels_last`` resolve here ("auto") from
:data:`CHANNELS_LAST`; the resolved value goes into ``args.channels_last`` and the reason
into ``args.channels_last_from``, so a run's record holds both. A new measurement changes
one entry of the table, not a script.

bf16 is never a default, however fast it measured: it changes the fp32 arithmetic the
reference and the paper's figures use. Where it measured faster, ``--amp``'s help says
so (:data:`HINTS`).

Mixed precision is one object, :class:`Precision`: an autocast context and a (scaled)
optimizer step. ``--amp bf16`` runs on GPUs and CPUs; whether it is faster than fp32 on a
CPU depends on the chip (AMX, AVX512-BF16), so ``benchmarks/bench_game.py --recommend``
measures it. ``--amp fp16`` is for GPUs without bf16; its gradient scaling is a no-op on
the CPU. Without ``--amp`` every method is a plain fp32 no-op wrapper.
"""
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from . import distributed


@dataclass(frozen=True)
class Default:
    value: bool
    evidence: str  # the measurement it rests on, as the start-of-run line and --help say it


# The experiments as the DFAD scripts declare them (deeplab: DFAD_camvid_deeplab.py and
# DFAD_nyu_deeplab.py, one declaration, the same networks and round).
EXPERIMENTS = {"mnist": "MNIST", "cifar": "CIFAR", "caltech101": "Caltech101", "deeplab": "CamVid/NYUv2 (DeepLab)"}

# (device type, experiment) -> channels_last. The figures are docs/speed.md's tables
# (benchmarks/bench_game.py, seconds per round, NHWC against NCHW in the same run).
CHANNELS_LAST = {
    ("cpu", "mnist"): Default(True, "MNIST on cpu measured 1.10-1.35x of NCHW's speed (Intel Xeon AMX, AMD Zen 4; "
                                    "batch 64 and 512)"),
    ("cpu", "cifar"): Default(True, "CIFAR on cpu measured 1.01-2.29x of NCHW's speed (Intel Xeon AMX, AMD Zen 4; "
                                    "batch 64)"),
    ("cpu", "caltech101"): Default(True, "Caltech101 on cpu measured 1.23x of NCHW's speed (AMD Zen 4, batch 16)"),
    ("cpu", "deeplab"): Default(True, "CamVid on cpu measured 1.33x of NCHW's speed (AMD Zen 4, batch 16)"),
    ("cuda", "mnist"): Default(False, "MNIST on cuda measured 0.78x of NCHW's speed on an H200 (batch 64; "
                                      "1.00x at batch 256)"),
    ("cuda", "cifar"): Default(True, "CIFAR on cuda measured 1.16x of NCHW's speed on an H200 (batch 64)"),
    # Not measured on a GPU yet: their ResNets are closer to CIFAR's than to LeNet-5, so
    # CIFAR's measurement stands in until benchmarks/device_check.sh measures them.
    ("cuda", "caltech101"): Default(True, "Caltech101 not measured on cuda yet; CIFAR's ResNets "
                                          "stand in (1.16x on an H200)"),
    ("cuda", "deeplab"): Default(True, "CamVid/NYUv2 not measured on cuda yet; CIFAR's ResNets "
                                       "stand in (1.16x on an H200)"),
}

# Faster options that are not defaults because they change the math (see the docstring).
HINTS = {
    ("cuda", "cifar"): "bf16 + channels_last measured 1.41x of fp32 NCHW's speed on an H200 (batch 64)",
}


def channels_last_default(device_type, experiment):
    """The measured memory format for ``experiment`` on ``device_type`` (NCHW, PyTorch's
    own, on a device type nobody measured)."""
    unmeasured = Default(False, f"no measurement on {device_type}: PyTorch's NCHW")
    return CHANNELS_LAST.get((device_type, experiment), unmeasured)


def add_args(parser, channels_last=False, experiment=None):
    """The speed flags. ``experiment`` (a key of :data:`EXPERIMENTS`): the DFAD scripts,
    whose memory format resolves from the table and who may capture their rounds in a
    CUDA graph; without it, ``channels_last`` is the fixed default (teacher training)."""
    speed = parser.add_argument_group("speed (same method, faster arithmetic)")
    hints = "".join(f"; {device}: {hint}" for (device, name), hint in HINTS.items() if name == experiment)
    speed.add_argument("--amp", choices=["bf16", "fp16"], default=None,
                       help="mixed precision; `python benchmarks/bench_game.py --recommend` says "
                            f"whether bf16 is faster on this machine{hints} (default: fp32 everywhere, "
                            f"since bf16 changes the arithmetic)")
    # Both flags set one value, args.channels_last, which the engine reads.
    default = None if experiment else channels_last
    speed.add_argument("--channels_last", dest="channels_last", action="store_true", default=default,
                       help="NHWC memory format for the networks" + (f" {auto_help(experiment)}" if experiment else ""))
    speed.add_argument("--no_channels_last", dest="channels_last", action="store_false", default=default,
                       help="PyTorch's usual NCHW memory format instead"
                            + ("" if experiment else " (default: channels_last=%(default)s)"))
    speed.add_argument("--compile", action="store_true", help="torch.compile the networks")
    speed.add_argument("--deterministic", action="store_true",
                       help="deterministic kernels on GPU (no cuDNN benchmark mode)")
    if experiment:
        speed.add_argument("--cuda_graph", action="store_true",
                           help="replay each round of the game from one CUDA graph (GPU only, one process; "
                                "the first rounds run eagerly, then one capture): for launch-bound "
                                "rounds such as LeNet-5's")
    return parser


def auto_help(experiment):
    here = distributed.device_type(no_cuda=False)
    here = "cuda (cpu with --no_cuda)" if here == "cuda" else here
    choices = "; ".join(f"on {device}: {on_off(channels_last_default(device, experiment).value)} "
                        f"({channels_last_default(device, experiment).evidence})" for device in ("cpu", "cuda"))
    return (f"(default: auto, measured per device for {EXPERIMENTS[experiment]}, docs/speed.md: {choices}; "
            f"this machine: {here})").replace("%", "%%")


def on_off(value):
    return "on" if value else "off"


def resolve(args, experiment):
    """Fill ``args.channels_last`` where the command line left it unset, on the device the
    run will use, and say where the value came from in ``args.channels_last_from``."""
    if args.channels_last is not None:
        args.channels_last_from = "given: --channels_last" if args.channels_last else "given: --no_channels_last"
        return args
    default = channels_last_default(distributed.device_type(args.no_cuda), experiment)
    args.channels_last = default.value
    args.channels_last_from = f"auto: {default.evidence}, docs/speed.md"
    return args


def start_line(args):
    """What the run resolved and why, for the start of its output."""
    return f"channels_last: {on_off(args.channels_last)} ({args.channels_last_from})"


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    def __init__(self, amp=None, device="cpu", cache_casts=True):
        """``cache_casts=False`` where the steps are captured in a CUDA graph, which
        cannot hold autocast's cache of cast weights."""
        self.device_type = torch.device(device).type
        self.cache_casts = cache_casts
        self.dtype = DTYPES[amp] if amp else None
        self.use_scaler = amp == "fp16"  # fp16 gradients underflow without loss scaling
        self.scalers = {}

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=self.cache_casts)

    def _scaler(self, name):
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler(self.device_type, enabled=self.use_scaler)
        return self.scalers[name]

    def scale(self, loss, name):
        """``loss`` scaled for its backward pass (fp16; unchanged otherwise), by the
        GradScaler of optimizer ``name``."""
        return self._scaler(name).scale(loss)

    def step(self, optimizer, name):
        """``optimizer.step()`` with the scaled gradients unscaled (fp16; a plain step otherwise)."""
        scaler = self._scaler(name)
        scaler.step(optimizer)
        scaler.update()

    def state_dict(self):
        return {name: scaler.state_dict() for name, scaler in self.scalers.items()}

    def load_state_dict(self, state):
        for name, scaler_state in state.items():
            self._scaler(name).load_state_dict(scaler_state)
