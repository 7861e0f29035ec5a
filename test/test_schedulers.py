"""Our learning-rate schedules: what ESPnet's trainer does with them, step by step."""

import pytest
import torch
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
from espnet2.tasks.abs_task import scheduler_classes

import espnet2_pse  # noqa: F401  (registers the schedulers)
from espnet2_pse.schedulers import OneCycleHoldLR


def rates(scheduler_class, steps: int):
    """(lr, beta1) after each of ``steps`` batches, as ESPnet's trainer steps a batch scheduler."""
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([weight], lr=1e-3)
    scheduler = scheduler_class(optimizer, max_lr=1e-3, total_steps=40, pct_start=0.1)
    out = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        out.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["betas"][0]))
    return out


def test_one_cycle_hold_follows_one_cycle_then_holds_its_end():
    assert scheduler_classes["onecyclehold"] is OneCycleHoldLR
    assert issubclass(OneCycleHoldLR, AbsBatchStepScheduler)  # stepped per batch by the trainer
    ours = rates(OneCycleHoldLR, 60)
    assert ours[:39] == rates(torch.optim.lr_scheduler.OneCycleLR, 39)
    # Warm-up to the peak, anneal to about zero with beta1 back at 0.95, then hold there.
    assert max(lr for lr, _ in ours) == pytest.approx(1e-3)
    assert ours[38] == pytest.approx((1e-3 / 25 / 1e4, 0.95))
    assert all(step == ours[38] for step in ours[39:])
    with pytest.raises(ValueError, match="Tried to step"):
        rates(torch.optim.lr_scheduler.OneCycleLR, 41)
