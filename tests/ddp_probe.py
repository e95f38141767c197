"""Run a script's main() under torchrun and save each process's final weights (test helper).

    torchrun --nproc_per_node=2 tests/ddp_probe.py OUT_DIR DFAD_mnist ARGS...
"""
import importlib
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.engine import loop, supervised  # noqa: E402
from utils.runtime import cli, distributed  # noqa: E402

out_dir, script, argv = sys.argv[1], sys.argv[2], sys.argv[3:]


def save_weights(name, *models):
    path = os.path.join(out_dir, f"{name}-rank{distributed.rank()}.pt")
    torch.save([{k: v for k, v in m.named_parameters()} for m in models], path)


original_run, original_fit = loop.run, supervised.fit


def run(args, exp, device):
    result = original_run(args, exp, device)
    save_weights("dfad", exp.student, exp.generator)
    return result


def fit(args, model, *rest, **kwargs):
    result = original_fit(args, model, *rest, **kwargs)
    save_weights("teacher", model)
    return result


loop.run, supervised.fit = run, fit
cli.main_guard(lambda: importlib.import_module(script).main(argv))
