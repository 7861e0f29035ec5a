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
      ``noise_prob``; a noisy view is then, with probability ``enhanced_prob``, passed
      through a perturbed oracle Wiener mask (:meth:`enhanced_like`): residual noise and
      speech distortion like a mask-based enhancer's output. That is what the student sees
      at inference: short windows of imperfectly enhanced speech.

    Only ``student`` and ``kd_loss`` are sub-modules (the loss holds parameters only when it
    has a trainable head, e.g. aamsoftmax's class vectors): the teacher is held by a
    :class:`FrozenTeacher` and is neither saved, optimised nor moved by ``.to()`` (it follows
    the batch's device itself). A loss with ``uses_teacher = False`` trains the student
    without a teacher: the teacher view is then never embedded.
    In eval mode the views are drawn from a fixed seed, so validation losses are comparable
    across epochs.

    Args:
        student: the encoder being trained, (B, T) -> (B, D).
        kd_loss: distillation loss on (B, D) embeddings.
        teacher: frozen teacher; None when building the model for inference or when
            ``kd_loss.uses_teacher`` is False.
        sample_rate: Hz (the task passes its --sample_rate).
        student_min_s, student_max_s: student window length range in seconds.
        noise_prob: probability that a row's student view is noisy.
        snr_low, snr_high: SNR range in dB of the noisy student views.
        enhanced_prob: probability that a noisy view is made enhanced-like.
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
        enhanced_prob: float = 0.0,
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
        self.enhanced_prob = enhanced_prob
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
        if self.enhanced_prob > 0:
            enhanced = self.enhanced_like(view, noisy - view, generator)
            use_enhanced = (uniform(batch) < self.enhanced_prob).to(speech.device)[:, None]
            noisy = torch.where(use_enhanced, enhanced, noisy)
        use_noise = (uniform(batch) < self.noise_prob).to(speech.device)[:, None]
        return torch.where(use_noise, noisy, view)

    @staticmethod
    def enhanced_like(
        clean: torch.Tensor, noise: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """(B, L) speech + noise through a perturbed oracle Wiener mask -> (B, L).

        Per row: gain = max(floor, (|S|^2 / (|S|^2 + |N|^2))^p * exp(sigma * z)) with
        p ~ U(0.5, 2) (under- to over-suppression), sigma ~ U(0, 0.5) and z ~ N(0, 1) per
        time-frequency bin (mask estimation errors), floor ~ U(0.02, 0.3) (residual noise);
        STFT 512 / 128 with a Hann window.
        """
        batch, length = clean.shape
        window = torch.hann_window(512, device=clean.device, dtype=clean.dtype)

        def stft(x):
            return torch.stft(x, 512, 128, window=window, return_complex=True)

        def draw(low, high):
            return (low + (high - low) * torch.rand(batch, 1, 1, generator=generator)).to(clean.device)

        s, n = stft(clean), stft(noise)
        wiener = s.abs().pow(2) / (s.abs().pow(2) + n.abs().pow(2)).clamp_min(1e-10)
        errors = torch.randn(s.shape, generator=generator).to(clean.device) * draw(0.0, 0.5)
        gain = (wiener.pow(draw(0.5, 2.0)) * errors.exp()).clamp(max=1.0)
        gain = torch.maximum(gain, draw(0.02, 0.3))
        return torch.istft((s + n) * gain, 512, 128, window=window, length=length)

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
            spk_labels: (B, 1) integer speaker ids (optional for the KD losses, where they
                widen InfoNCE positives; class ids 0..N-1 required by aamsoftmax).
        Returns:
            loss, stats (loss, and with a teacher: cos_pos: mean cos(s_i, t_i), acc: top-1
            retrieval of the own teacher embedding, or of one of the same speaker, among the
            batch), batch size.
        """
        uses_teacher = self.kd_loss.uses_teacher
        if uses_teacher and self.teacher is None:
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
        view = self.student_view(speech, speech_lengths, noise, generator)
        student_emb = self.student(view)
        if uses_teacher:
            teacher_emb = self.teacher.embed(speech, speech_lengths)
            loss = self.kd_loss(student_emb, teacher_emb, labels)
            stats = dict(
                loss=loss.detach(), **self._teacher_stats(student_emb, teacher_emb, labels)
            )
        else:
            loss = self.kd_loss(student_emb, None, labels)
            stats = dict(loss=loss.detach())
        loss, stats, weight = force_gatherable((loss, stats, speech.size(0)), loss.device)
        return loss, stats, weight

    @staticmethod
    @torch.no_grad()
    def _teacher_stats(
        student_emb: torch.Tensor, teacher_emb: torch.Tensor, labels: Optional[torch.Tensor]
    ) -> Dict[str, torch.Tensor]:
        """cos_pos and acc (see forward) of (B, D) student vs (B, D) teacher embeddings."""
        sim = F.normalize(student_emb, dim=-1) @ teacher_emb.t()
        target = torch.eye(len(sim), dtype=torch.bool, device=sim.device)
        if labels is not None:
            target = target | (labels[:, None] == labels[None, :])
        hit = target.gather(1, sim.argmax(-1, keepdim=True)).float().mean()
        return dict(cos_pos=sim.diagonal().mean(), acc=hit)

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs):
        """No feature statistics: the student normalises its own log-mel features."""
        return {}
