"""Distillation losses between student and teacher speaker embeddings.

All losses take (B, D) student embeddings s and (B, D) teacher embeddings t of the *same*
utterances (row i of both comes from utterance i) and compare directions only: both are
L2-normalised here, whatever the caller passed.

- ``infonce``: contrastive, student -> teacher over the batch (optionally symmetric and with
  speaker-level positives). The student only has to keep the teacher's relative geometry.
- ``mse``: squared Euclidean distance to the teacher direction (regression baseline).
- ``cosine``: 1 - cos(s_i, t_i) (regression baseline).
"""

from abc import ABC, abstractmethod
from typing import Optional

import torch
import torch.nn.functional as F


class AbsKDLoss(torch.nn.Module, ABC):
    """(B, D) student, (B, D) teacher [, (B,) speaker labels] -> scalar loss.

    A loss with ``uses_teacher = False`` (e.g. the from-scratch ``aamsoftmax`` baseline) is
    called with ``teacher=None``; the model then never runs the teacher.
    """

    uses_teacher: bool = True

    @abstractmethod
    def forward(
        self,
        student: torch.Tensor,
        teacher: Optional[torch.Tensor],
        labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        raise NotImplementedError


def _check(student: torch.Tensor, teacher: torch.Tensor):
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher embeddings must both be (B, D); got {tuple(student.shape)} "
            f"and {tuple(teacher.shape)} (is the student's embed_dim the teacher's dimension?)"
        )
    return F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)


class InfoNCELoss(AbsKDLoss):
    """Student -> teacher InfoNCE with cosine similarities.

        L = -(1/B) sum_i log( sum_{j in P(i)} exp(cos(s_i, t_j) / tau)
                              / sum_j exp(cos(s_i, t_j) / tau) )

    P(i) = {i} without labels; with labels and ``speaker_positives``, every t_j of the same
    speaker is a positive (other crops of the same voice are not pushed away).

    Args:
        temperature: tau (> 0); 0.07-0.1 is usual.
        symmetric: also apply the teacher -> student direction and average the two.
        align_weight: weight of an extra mean (1 - cos(s_i, t_i)) alignment term.
        speaker_positives: use labels (when given) to widen the positive set.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        symmetric: bool = False,
        align_weight: float = 0.0,
        speaker_positives: bool = True,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.symmetric = symmetric
        self.align_weight = align_weight
        self.speaker_positives = speaker_positives

    @staticmethod
    def _direction(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        log_all = torch.logsumexp(logits, dim=-1)
        log_pos = torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=-1)
        return (log_all - log_pos).mean()

    def forward(self, student, teacher, labels=None):
        s, t = _check(student, teacher)
        logits = s @ t.t() / self.temperature  # (B, B): row i = student i vs all teachers
        positives = torch.eye(len(s), dtype=torch.bool, device=s.device)
        if labels is not None and self.speaker_positives:
            labels = labels.view(-1)
            positives = positives | (labels[:, None] == labels[None, :])
        loss = self._direction(logits, positives)
        if self.symmetric:
            loss = 0.5 * (loss + self._direction(logits.t(), positives.t()))
        if self.align_weight > 0:
            loss = loss + self.align_weight * (1.0 - (s * t).sum(-1)).mean()
        return loss


class MSEKDLoss(AbsKDLoss):
    """Mean over the batch of ||s_i - t_i||^2 between unit vectors (in [0, 4])."""

    def forward(self, student, teacher, labels=None):
        s, t = _check(student, teacher)
        return (s - t).pow(2).sum(-1).mean()


class CosineKDLoss(AbsKDLoss):
    """Mean over the batch of 1 - cos(s_i, t_i) (in [0, 2])."""

    def forward(self, student, teacher, labels=None):
        s, t = _check(student, teacher)
        return (1.0 - (s * t).sum(-1)).mean()
