"""Distillation of a tiny student speaker encoder from a frozen teacher."""

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2_pse.data.mixing import mix_at_snr
from espnet2_pse.spk.abs_student import AbsSpkStudent
from espnet2_pse.spk.kd_losses import AbsKDLoss
from espnet2_pse.spk.teacher import FrozenTeacher


class ESPnetSpkDistillModel(AbsESPnetModel):
    """Trainable student + frozen teacher; the loss compares their embeddings of two views.

    Views of each utterance in the batch:
    - teacher: the clean crop given by the data (``speech``, e.g. 4 s);
    - student: a random window of ``student_min_s``-``student_max_s`` seconds inside that
      crop (one length per batch, one offset per row), with the matching window of ``noise``
      added at an SNR drawn from U(``snr_low``, ``snr_high``) dB with probability
      ``noise_prob``. That is what the student sees at inference: short windows of
      imperfectly enhanced speech.

    Only ``student`` is a sub-module: the teacher is held by a :class:`FrozenTeacher` and is
    neither saved, optimised nor moved by ``.to()`` (it follows the batch's device itself).
    In eval mode the views are drawn from a fixed seed, so validation losses are comparable
    across epochs.

    Args:
        student: the encoder being trained, (B, T) -> (B, D).
        kd_loss: distillation loss on (B, D) embeddings.
        teacher: frozen teacher; None only when building the model for inference.
        sample_rate: Hz (the task passes its --sample_rate).
        student_min_s, student_max_s: student window length range in seconds.
        noise_prob: probability that a row's student view is noisy.
        snr_low, snr_high: SNR range in dB of the noisy student views.
        eval_seed: seed of the student views in eval mode.
    """

    def __init__(
        self,
        student: AbsSpkStudent,
        kd_loss: AbsKDLoss,
        teacher: Optional[FrozenTeacher],
        sample_rate: int,
        student_min_s: float = 1.0,
        student_max_s: float = 3.0,
        noise_prob: float = 1.0,
        snr_low: float = -5.0,
        snr_high: float = 20.0,
        eval_seed: int = 0,
    ):
        super().__init__()
        if not 0 < student_min_s <= student_max_s:
            raise ValueError(
                f"need 0 < student_min_s <= student_max_s, got {student_min_s}, {student_max_s}"
            )
        if snr_low > snr_high:
            raise ValueError(f"snr_low ({snr_low}) > snr_high ({snr_high})")
        self.student = student
        self.kd_loss = kd_loss
        # A plain attribute holding a non-Module: invisible to state_dict()/parameters().
        self.teacher = teacher
        self.sample_rate = sample_rate
        self.student_min_s = student_min_s
        self.student_max_s = student_max_s
        self.noise_prob = noise_prob
        self.snr_low = snr_low
        self.snr_high = snr_high
        self.eval_seed = eval_seed

    def student_view(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Short (noisy) windows of ``speech``: (B, T) -> (B, L), L from the length range."""
        batch = speech.size(0)
        shortest = int(speech_lengths.min())

        def uniform(*size):
            return torch.rand(*size, generator=generator)

        seconds = self.student_min_s + (self.student_max_s - self.student_min_s) * float(uniform(1))
        length = min(max(int(seconds * self.sample_rate), 1), shortest)
        offsets = (uniform(batch) * (speech_lengths.cpu() - length + 1)).long()
        index = (offsets[:, None] + torch.arange(length)[None, :]).to(speech.device)
        view = speech.gather(1, index)
        if noise is None or self.noise_prob <= 0:
            return view
        if noise.shape != speech.shape:
            raise ValueError(
                f"noise {tuple(noise.shape)} must have the shape of speech {tuple(speech.shape)}"
            )
        snr = self.snr_low + (self.snr_high - self.snr_low) * uniform(batch)
        noisy = mix_at_snr(view, noise.gather(1, index), snr.to(speech.device, speech.dtype))
        use_noise = (uniform(batch) < self.noise_prob).to(speech.device)[:, None]
        return torch.where(use_noise, noisy, view)

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
        spk_labels: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """One distillation step.

        Args:
            speech: (B, T) clean crops (teacher view), samples.
            speech_lengths: (B,) valid samples.
            noise: (B, T) noise crops aligned with ``speech`` (optional).
            spk_labels: (B, 1) integer speaker ids (optional; widens InfoNCE positives).
        Returns:
            loss, stats (loss, cos_pos: mean cos(s_i, t_i), acc: top-1 retrieval of the own
            teacher embedding, or of one of the same speaker, among the batch), batch size.
        """
        if self.teacher is None:
            raise RuntimeError(
                "ESPnetSpkDistillModel was built without a teacher: it can embed with "
                ".student but cannot compute the distillation loss"
            )
        if speech_lengths is None:
            speech_lengths = torch.full((speech.size(0),), speech.size(1), dtype=torch.long)
        labels = spk_labels.view(-1) if spk_labels is not None else None

        generator = None
        if not self.training:
            generator = torch.Generator().manual_seed(self.eval_seed)
        teacher_emb = self.teacher.embed(speech, speech_lengths)
        view = self.student_view(speech, speech_lengths, noise, generator)
        student_emb = self.student(view)
        loss = self.kd_loss(student_emb, teacher_emb, labels)

        with torch.no_grad():
            sim = F.normalize(student_emb, dim=-1) @ teacher_emb.t()
            target = torch.eye(len(sim), dtype=torch.bool, device=sim.device)
            if labels is not None:
                target = target | (labels[:, None] == labels[None, :])
            hit = target.gather(1, sim.argmax(-1, keepdim=True)).float().mean()
            stats = dict(loss=loss.detach(), cos_pos=sim.diagonal().mean(), acc=hit)
        loss, stats, weight = force_gatherable((loss, stats, speech.size(0)), loss.device)
        return loss, stats, weight

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs):
        """No feature statistics: the student normalises its own log-mel features."""
        return {}
