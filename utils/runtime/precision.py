"""Mixed precision as one object: an autocast context and a (scaled) optimizer step.

``--amp bf16`` runs on GPUs and CPUs; whether it is faster than fp32 on a CPU depends
on the chip (AMX, AVX512-BF16), so ``benchmarks/bench_game.py --recommend`` measures it.
``--amp fp16`` is for GPUs without bf16; its gradient scaling is a no-op on the CPU.
Without ``--amp`` every method is a plain fp32 no-op wrapper.
"""
from contextlib import nullcontext

import torch

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
