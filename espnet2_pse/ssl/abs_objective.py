"""Base class and registry of self-supervised training objectives.

An objective turns a training batch of (pseudo-)source speech into network inputs and targets
on the fly and returns ESPnet's ``(loss, stats, weight)``. It is a plain Python object, not an
``nn.Module``: nothing it holds (noise banks, the frozen DP predictor) may enter the saved
state dict, so packed models load into the stock ESPnet enhancement model.
"""

from abc import ABC, abstractmethod
from typing import Dict, Optional, Tuple

import torch
from espnet2.train.class_choices import ClassChoices


class AbsSSLObjective(ABC):
    """Builds training inputs/targets per batch and computes the loss through the model."""

    def check_model(self, model) -> None:
        """Raise ValueError if the model's criteria cannot serve this objective (at build time)."""

    @abstractmethod
    def __call__(
        self,
        model,
        speech: torch.Tensor,
        speech_lengths: Optional[torch.Tensor],
        additional: Dict[str, torch.Tensor],
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Compute the training loss.

        Args:
            model: the :class:`~espnet2_pse.models.pse_model.PSEModel` being trained.
            speech: (B, T) pseudo-source speech crops (``speech_ref1`` of the batch).
            speech_lengths: (B,) valid samples, or None for fixed-length chunks.
            additional: other batch entries the separator may use (e.g. ``enroll_ref1``).
        Returns:
            loss (scalar), stats (name -> detached scalar), weight (batch size).
        """


ssl_objective_choices = ClassChoices(
    name="ssl_objective",
    classes=dict(),
    type_check=AbsSSLObjective,
    default=None,
    optional=True,
)
