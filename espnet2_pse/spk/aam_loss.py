"""Additive angular margin (AAM) softmax over speaker classes: the from-scratch baseline.

Not a distillation loss: the student is trained as a speaker classifier on its own, with no
teacher, so that the contrastive-KD students can be compared with a student of the same size
that never saw the teacher. It plugs into SpkDistillTask as ``kd_loss: aamsoftmax`` and says
so with ``uses_teacher = False`` (the model then skips the teacher forward).

With unit-norm embedding e_i and unit-norm class vectors w_j, cos(theta_ij) = e_i . w_j and

    logit_ij = s * cos(theta_ij + m)   for j = y_i (the true class)
    logit_ij = s * cos(theta_ij)       otherwise
    L = mean_i cross_entropy(logit_i, y_i)

(additive angular margin m in radians, scale s; Deng et al., ArcFace, CVPR 2019).
cos(theta + m) stops decreasing once theta + m passes pi; past that point (theta > pi - m)
the true-class logit continues linearly in cos(theta) instead, so it stays monotonic and
continuous there.

``infonce_aam`` (InfoNCEAAMLoss) puts that classifier head beside contrastive KD, for a student
that stays in the teacher's space.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F

from espnet2_pse.spk.kd_losses import AbsKDLoss, InfoNCELoss

# Keeps sqrt(1 - cos^2) away from 0, where its gradient is infinite.
SIN_EPS = 1e-7

LABELS_HINT = (
    "give the speaker of every utterance as spk_labels data (e.g. utt2spk,spk_labels,text) "
    "and --spk2utt FILE, which maps speakers to class ids 0..N-1"
)


class AAMSoftmaxLoss(AbsKDLoss):
    """(B, D) student embeddings, (B,) class ids in [0, num_speakers) -> scalar loss.

    The class vectors (num_speakers, D) are trainable parameters of this loss: they are
    optimised with the student and saved in the training checkpoint (``kd_loss.weight``), but
    the student alone is what inference uses.

    Args:
        num_speakers: number of training speakers N; SpkDistillTask fills it from --spk2utt.
        embed_dim: student embedding dimension D; SpkDistillTask fills it from the student.
        margin: additive angular margin m in radians, 0 <= m < pi (0.2 is usual).
        scale: logit scale s > 0 (30 is usual).
    """

    uses_teacher = False

    def __init__(
        self,
        num_speakers: Optional[int] = None,
        embed_dim: int = 192,
        margin: float = 0.2,
        scale: float = 30.0,
    ):
        super().__init__()
        if num_speakers is None or num_speakers < 1:
            raise ValueError(
                f"aamsoftmax needs num_speakers >= 1, got {num_speakers}: set kd_loss_conf "
                "num_speakers or give --spk2utt (its number of speakers is used)"
            )
        if embed_dim < 1:
            raise ValueError(f"aamsoftmax embed_dim must be >= 1, got {embed_dim}")
        if not 0.0 <= margin < math.pi:
            raise ValueError(f"aamsoftmax margin must be in [0, pi) radians, got {margin}")
        if scale <= 0:
            raise ValueError(f"aamsoftmax scale must be > 0, got {scale}")
        self.num_speakers = num_speakers
        self.margin = margin
        self.scale = scale
        self.weight = torch.nn.Parameter(torch.empty(num_speakers, embed_dim))
        torch.nn.init.xavier_uniform_(self.weight)

    def cosines(self, student: torch.Tensor) -> torch.Tensor:
        """(B, D) embeddings -> (B, N) cosine similarity to every class vector."""
        if student.dim() != 2 or student.size(1) != self.weight.size(1):
            raise ValueError(
                f"aamsoftmax expects (B, {self.weight.size(1)}) student embeddings, got "
                f"{tuple(student.shape)} (kd_loss_conf embed_dim must be the student's)"
            )
        cos = F.normalize(student, dim=-1) @ F.normalize(self.weight, dim=-1).t()
        return cos.clamp(-1.0, 1.0)

    def _check_labels(self, labels: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        if labels is None:
            raise ValueError(f"aamsoftmax needs speaker class ids but got none: {LABELS_HINT}")
        labels = labels.view(-1).long()
        if labels.numel() != batch:
            raise ValueError(f"aamsoftmax got {labels.numel()} labels for {batch} embeddings")
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_speakers:
            raise ValueError(
                f"aamsoftmax class ids must lie in [0, {self.num_speakers}), got ids in "
                f"[{low}, {high}]: {LABELS_HINT}; kd_loss_conf num_speakers must be at least "
                "the number of speakers it lists"
            )
        return labels

    def forward(
        self,
        student: torch.Tensor,
        teacher: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """AAM-softmax cross-entropy; ``teacher`` is ignored (may be None)."""
        labels = self._check_labels(labels, student.size(0))
        cos = self.cosines(student)
        true_cos = cos.gather(1, labels[:, None])  # (B, 1)
        true_sin = (1.0 - true_cos.pow(2)).clamp_min(SIN_EPS).sqrt()
        # cos(theta + m) by the angle-sum identity, valid while theta + m <= pi.
        shifted = true_cos * math.cos(self.margin) - true_sin * math.sin(self.margin)
        # theta > pi - m  <=>  cos(theta) < -cos(m): continue from -1 with slope 1 in cos.
        beyond = true_cos + math.cos(self.margin) - 1.0
        shifted = torch.where(true_cos >= -math.cos(self.margin), shifted, beyond)
        logits = self.scale * cos.scatter(1, labels[:, None], shifted)
        return F.cross_entropy(logits, labels)


class InfoNCEAAMLoss(AbsKDLoss):
    """Contrastive KD with an AAM-softmax speaker classifier beside it:

        L = InfoNCE(s, t; tau, align) + aam_weight * AAM(s, y; m, s)

    The InfoNCE and alignment terms keep the student in the teacher's space (the conditioned
    separator and the refinement read it there); the classifier head sharpens the margins
    between the training voices, which AAM alone does better than KD on clean trials.
    Labels must be class ids 0..N-1 (``--spk2utt``); they also widen InfoNCE's positives.

    Args:
        num_speakers, embed_dim, margin, scale: the AAM head (SpkDistillTask fills the
            first two from --spk2utt and the student).
        temperature, symmetric, align_weight, speaker_positives: InfoNCE's.
        aam_weight: weight of the AAM term (> 0).
    """

    def __init__(
        self,
        num_speakers: Optional[int] = None,
        embed_dim: int = 192,
        margin: float = 0.2,
        scale: float = 30.0,
        temperature: float = 0.07,
        symmetric: bool = False,
        align_weight: float = 1.0,
        speaker_positives: bool = True,
        aam_weight: float = 0.5,
    ):
        super().__init__()
        if aam_weight <= 0:
            raise ValueError(f"infonce_aam aam_weight must be > 0, got {aam_weight} (use kd_loss infonce)")
        self.aam_weight = aam_weight
        self.infonce = InfoNCELoss(temperature, symmetric, align_weight, speaker_positives)
        self.aam = AAMSoftmaxLoss(num_speakers, embed_dim, margin, scale)

    def forward(self, student, teacher, labels=None):
        return self.infonce(student, teacher, labels) + self.aam_weight * self.aam(student, None, labels)
