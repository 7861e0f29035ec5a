"""On-the-fly refinement of the conditioning speaker embedding from the enhanced output.

Every hop the student embeds the last W seconds of enhanced speech:

    e_hat_k = S(y[t - W, t])
    accept  = cos(e_hat_k, e_0) > theta  and  RMS level of the window > floor
    e_bar_k = beta * e_bar_{k-1} + (1 - beta) * e_hat_k          (only when accepted)
    e_k     = normalize(alpha * e_0 + (1 - alpha) * e_bar_k)

e_0 is the enrollment embedding (from the teacher, computed once). The gate keeps the
conditioning from drifting to an interfering talker or to silence. The embedding computed at
sample t is used for the frames after t only: the loop is causal.
"""

import math
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F


SOURCES = ("enhanced", "mixture")  # what the student embeds during refinement


class EmbeddingRefiner:
    """Causal, stateful embedding refinement over a stream of enhanced audio.

    Feed the enhanced output block by block with :meth:`push`; read the embedding to
    condition the *next* block from :attr:`embedding`. :meth:`run` does the same for a whole
    signal and returns the embedding in force for each hop.

    Args:
        student: speaker encoder, (B, T) waveform -> (B, D) embedding in the enrollment's space.
        enrollment_embedding: (D,) or (1, D) e_0.
        window_s: W, seconds of audio the student embeds.
        hop_s: h, seconds between updates.
        alpha: weight of e_0 in the blend, in [0, 1] (1: static enrollment).
        ema_beta: EMA factor of the accepted student embeddings, in [0, 1).
        cos_threshold: theta; an update whose cosine to e_0 is not above it is skipped.
            Calibrate it per student: student-to-teacher cosines depend on the distillation
            loss (same-speaker values of ~0.3 for pure InfoNCE, ~0.6-0.8 with an alignment
            term or cosine-KD on the embedded corpus).
        sample_rate: Hz.
        min_level_db: RMS level (dBFS) below which a window counts as silence and is skipped;
            None disables the check.
    """

    def __init__(
        self,
        student: torch.nn.Module,
        enrollment_embedding: torch.Tensor,
        window_s: float = 2.0,
        hop_s: float = 0.5,
        alpha: float = 0.7,
        ema_beta: float = 0.8,
        cos_threshold: float = 0.5,
        sample_rate: int = 16000,
        min_level_db: Optional[float] = -50.0,
    ):
        if window_s <= 0 or hop_s <= 0:
            raise ValueError(f"window_s ({window_s}) and hop_s ({hop_s}) must be > 0 seconds")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if not 0.0 <= ema_beta < 1.0:
            raise ValueError(f"ema_beta must be in [0, 1), got {ema_beta}")
        enrollment = torch.as_tensor(enrollment_embedding).detach().float().reshape(-1)
        if not torch.isfinite(enrollment).all() or enrollment.norm() == 0:
            raise ValueError("enrollment_embedding must be finite and non-zero")
        self.student = student
        self.enrollment = F.normalize(enrollment, dim=0)
        self.window = int(round(window_s * sample_rate))
        self.hop = int(round(hop_s * sample_rate))
        self.alpha = alpha
        self.ema_beta = ema_beta
        self.cos_threshold = cos_threshold
        self.min_level_db = min_level_db
        self.reset()

    def reset(self, keep_embedding: bool = False) -> None:
        """Forget the stream: back to the enrollment embedding. With ``keep_embedding`` (the next
        signal of one session) only the audio and the counts are forgotten: the refined
        embedding and its EMA carry over."""
        if not keep_embedding or not hasattr(self, "embedding"):
            self.embedding = self.enrollment.clone()
            self._ema: Optional[torch.Tensor] = None
        self._buffer = torch.zeros(0)
        self._since_update = 0
        self.accepted = 0
        self.rejected = 0

    def _candidate(self, window: torch.Tensor) -> torch.Tensor:
        parameter = next(self.student.parameters(), None)
        device = parameter.device if parameter is not None else window.device
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad():
            e_hat = self.student(window[None].to(device))[0].float().cpu()
        self.student.train(was_training)
        return F.normalize(e_hat, dim=0)

    def _update(self, window: torch.Tensor) -> None:
        if self.min_level_db is not None:
            rms = window.pow(2).mean().sqrt().item()
            if 20.0 * math.log10(rms + 1e-12) <= self.min_level_db:
                self.rejected += 1
                return
        e_hat = self._candidate(window)
        if torch.dot(e_hat, self.enrollment).item() <= self.cos_threshold:
            self.rejected += 1  # probably another talker: keep the current embedding
            return
        self.accepted += 1
        if self._ema is None:
            self._ema = e_hat
        else:
            self._ema = self.ema_beta * self._ema + (1.0 - self.ema_beta) * e_hat
        self.embedding = F.normalize(
            self.alpha * self.enrollment + (1.0 - self.alpha) * self._ema, dim=0
        )

    def push(self, samples: torch.Tensor) -> List[torch.Tensor]:
        """Append (T,) enhanced samples; run every update that falls due.

        An update is due every ``hop`` samples, once a full window has been seen.
        Returns the embeddings produced by those updates (possibly none; a skipped update
        repeats the current embedding).
        """
        samples = torch.as_tensor(samples).detach().float().reshape(-1).cpu()
        updates = []
        while len(samples):
            take = min(len(samples), self.hop - self._since_update)
            self._buffer = torch.cat([self._buffer, samples[:take]])[-self.window :]
            self._since_update += take
            samples = samples[take:]
            if self._since_update == self.hop:
                self._since_update = 0
                if len(self._buffer) == self.window:
                    self._update(self._buffer)
                    updates.append(self.embedding.clone())
        return updates

    def run(self, signal: torch.Tensor) -> torch.Tensor:
        """Embeddings in force for each hop of a whole (T,) signal, from a fresh state.

        Returns (ceil(T / hop), D): row k conditions samples [k*hop, (k+1)*hop) and depends
        only on samples before k*hop.
        """
        self.reset()
        signal = torch.as_tensor(signal).detach().float().reshape(-1)
        rows = []
        for start in range(0, len(signal), self.hop):
            rows.append(self.embedding.clone())
            self.push(signal[start : start + self.hop])
        return torch.stack(rows) if rows else self.enrollment.new_zeros(0, len(self.enrollment))


def enhance_with_refinement(
    enhance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    mixture: torch.Tensor,
    refiner: EmbeddingRefiner,
    context_s: float = 4.0,
    sample_rate: int = 16000,
    source: str = "enhanced",
    keep_embedding: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Enhance a (T,) mixture hop by hop, conditioning each hop on the refined embedding.

    For hop k, ``enhance(segment, embedding)`` gets the mixture from ``context_s`` seconds
    before the hop to the hop's end and the embedding in force (which depends only on the
    output of earlier hops); the hop's part of its output is kept and pushed to the refiner
    (``source="enhanced"``, the method), or the hop's mixture is (``source="mixture"``: the
    input-side ablation). Works with any separator, causal or not: a non-causal one just sees
    no future beyond the hop.

    Args:
        enhance: (T',) mixture segment, (D,) embedding -> (T',) enhanced segment.
        mixture: (T,) waveform.
        refiner: the refiner (reset here).
        context_s: seconds of past mixture given with each hop.
        sample_rate: Hz.
        source: what the refiner embeds: "enhanced" output or the "mixture".
        keep_embedding: start from the refiner's current embedding (a session's next signal)
            instead of the enrollment's.
    Returns:
        enhanced (T,), embeddings (K, D) used for each of the K hops.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got '{source}'")
    refiner.reset(keep_embedding)
    mixture = torch.as_tensor(mixture).reshape(-1)
    context = int(round(context_s * sample_rate))
    pieces, used = [], []
    for start in range(0, len(mixture), refiner.hop):
        end = min(start + refiner.hop, len(mixture))
        first = max(0, start - context)
        used.append(refiner.embedding.clone())
        out = enhance(mixture[first:end], used[-1])
        if out.shape[-1] != end - first:
            raise ValueError(f"enhance returned {out.shape[-1]} samples for {end - first}")
        piece = out.reshape(-1)[start - first :]
        refiner.push(piece if source == "enhanced" else mixture[start:end])
        pieces.append(piece.detach())
    if not pieces:
        return mixture.clone(), refiner.enrollment.new_zeros(0, len(refiner.enrollment))
    return torch.cat(pieces), torch.stack(used)


def enhance_two_pass(
    enhance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    mixture: torch.Tensor,
    refiner: EmbeddingRefiner,
    source: str = "enhanced",
    keep_embedding: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Offline refinement of a whole (T,) mixture: one pass with the refiner's starting
    embedding, the refiner over all of that output (or the mixture, ``source="mixture"``), then
    one pass with the refined embedding. A non-causal separator keeps its future context, which
    :func:`enhance_with_refinement` withholds. Arguments as there; returns enhanced (T,) and the
    (1, D) embedding of the second pass."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got '{source}'")
    refiner.reset(keep_embedding)
    mixture = torch.as_tensor(mixture).reshape(-1)
    first = enhance(mixture, refiner.embedding.clone())
    refiner.push(first if source == "enhanced" else mixture)
    refined = refiner.embedding.clone()
    return enhance(mixture, refined).reshape(-1), refined[None]
