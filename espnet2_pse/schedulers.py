"""Learning-rate schedules that ESPnet's ``--scheduler`` lacks, registered by :mod:`espnet2_pse.registry`."""

from typing import List

from torch.optim.lr_scheduler import OneCycleLR


class OneCycleHoldLR(OneCycleLR):
    """PyTorch's one-cycle schedule (warm-up, then cosine anneal; Adam's beta1 cycles the other
    way), holding its final learning rate after ``total_steps`` instead of raising.

    ESPnet's chunk iterator yields as many batches per epoch as the drawn segments hold crops, so
    the step count of a run is only known approximately beforehand; an estimate slightly too low
    must end the run at the annealed rate, not stop it.
    """

    def get_lr(self) -> List[float]:
        if self.last_epoch < self.total_steps:
            return super().get_lr()
        # The last scheduled step already set the annealed minimum (and beta1): keep both.
        return [group["lr"] for group in self.optimizer.param_groups]


# Name in --scheduler -> class; ESPnet steps these once per batch.
SCHEDULERS = {"onecyclehold": OneCycleHoldLR}
