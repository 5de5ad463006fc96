"""Learning-rate schedules, and the budget ladder a warmup-stable-decay schedule gives from one run.

- `cosine`: the paper's schedule, cosine decay to zero over the run's whole budget.  A budget ladder under
  cosine needs one run per budget, because every step's rate depends on the total.
- `wsd` (warmup-stable-decay, Hägele et al. 2024, arXiv 2405.18392): a linear warmup over `warmup_epochs`,
  then the constant base rate (the trunk), then a linear cooldown to zero over the last `cooldown_fraction` of
  the budget.  The trunk's rates do not depend on the budget, so a run of E epochs is the trunk up to its
  cooldown start plus a cooldown: every rung of a ladder E/2^(n-1), ..., E/2, E is a cooldown branch off one
  trunk, for about (1 + cooldown_fraction) E epochs of training instead of 2E.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from secret_moe.errors import ConfigError

KINDS = ("cosine", "wsd")


@dataclass(frozen=True)
class Schedule:
    """The `distill.schedule` config section (defaults: config/schema.yaml)."""

    kind: str = "cosine"
    warmup_epochs: float = 0.0
    cooldown_fraction: float = 0.2
    rungs: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"distill.schedule.kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.rungs < 1:
            raise ConfigError("distill.schedule.rungs: must be at least 1")
        if self.kind == "cosine" and self.rungs > 1:
            raise ConfigError("distill.schedule.rungs: a ladder of rungs from one run needs kind: wsd")
        if not 0 < self.cooldown_fraction <= 1:
            raise ConfigError("distill.schedule.cooldown_fraction: must lie in (0, 1]")

    def budgets(self, epochs: int) -> list[int]:
        """The ladder's budgets in epochs, shortest first: epochs / 2^(rungs-1), ..., epochs / 2, epochs."""
        scale = 2 ** (self.rungs - 1)
        if epochs % scale:
            raise ConfigError(f"distill.epochs: {epochs} is not divisible by 2^(rungs-1) = {scale} (distill.schedule)")
        budgets = [epochs // 2**i for i in reversed(range(self.rungs))]
        for budget in budgets:
            if self.kind == "wsd" and self.cooldown_start(budget) < self.warmup_epochs:
                raise ConfigError(
                    f"distill.schedule: a budget of {budget} epochs cools down before its warmup of "
                    f"{self.warmup_epochs} epochs ends"
                )
        return budgets

    def cooldown_epochs(self, budget: int) -> int:
        """Whole epochs of cooldown for a budget (at least one)."""
        return max(1, round(self.cooldown_fraction * budget))

    def cooldown_start(self, budget: int) -> int:
        """The epoch after which a run of `budget` epochs leaves the trunk (all of it under cosine: 0)."""
        return budget - self.cooldown_epochs(budget) if self.kind == "wsd" else 0

    def factor(self, step: int, steps_per_epoch: int, budget: int) -> float:
        """A `wsd` run's rate at global step `step` (0-based) of a budget of `budget` epochs, as a fraction of the
        base rate: a linear warmup, then 1 (the trunk, the same for every budget), then linear to 0."""
        start = self.cooldown_start(budget) * steps_per_epoch
        if step >= start:
            return 1.0 - (step - start + 1) / (self.cooldown_epochs(budget) * steps_per_epoch)
        warmup = round(self.warmup_epochs * steps_per_epoch)
        return min(1.0, (step + 1) / warmup) if warmup else 1.0

    def footprint(self, epochs: int) -> int:
        """Epochs of training a run of the whole ladder costs (trunk plus every branch)."""
        if self.kind == "cosine":
            return epochs
        budgets = self.budgets(epochs)
        return self.cooldown_start(budgets[-1]) + sum(self.cooldown_epochs(b) for b in budgets)


def cosine_factor(step: int, steps: int) -> float:
    """Closed form of the cosine decay to zero (torch's CosineAnnealingLR), for tests and figures."""
    return 0.5 * (1 + math.cos(math.pi * step / steps))
