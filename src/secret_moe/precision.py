"""`distill.precision`: the training step in float32, or its forward under bfloat16 or float16 autocast."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# `distill.precision`: the dtype of the training step's autocast, None for plain float32.  The authors trained
# with float16 autocast on GPU; bfloat16 needs no gradient scaler (float32's exponent range).  Parameters,
# Adam's state and every evaluation stay float32 in all three.
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
FULL_PRECISION = "float32"


@dataclass
class MixedPrecision:
    """One student's autocast dtype (None: float32) and, for float16, its own gradient scaler (a scaler's
    scale follows its student's gradients, so students trained together do not share one)."""

    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    @classmethod
    def of(cls, precision: str, device: str | torch.device) -> MixedPrecision:
        dtype = PRECISIONS[precision]
        device_type = torch.device(device).type
        return cls(dtype, torch.amp.GradScaler(device_type) if dtype is torch.float16 else None)
