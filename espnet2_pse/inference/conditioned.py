"""Speaker-conditioned enhancement with a static or an on-the-fly refined embedding.

Static: the separator is conditioned on the enrollment embedding e_0 for the whole signal
(one network pass). Refined: :func:`espnet2_pse.spk.refinement.enhance_with_refinement`
enhances hop by hop; after each hop the student embeds the last W seconds of *enhanced* output
and the embedding for the next hop is e_0 blended with the EMA of the accepted student
embeddings (see :class:`espnet2_pse.spk.refinement.EmbeddingRefiner`). Each hop gets
``context_s`` seconds of past mixture, so the cost is about (context_s + hop_s) / hop_s network
passes per second of audio, plus the student every hop. Two-pass (``two_pass``, offline:
:func:`espnet2_pse.spk.refinement.enhance_two_pass`): two network passes and the student every hop.

Command-line entry points share :func:`add_refinement_arguments` (the ``--refine`` group),
:func:`refinement_from_args` and :func:`load_student`; :func:`conditioning` and
:func:`check_embedding` tell what a model expects as ``enroll_ref1``.
"""

import argparse
import os
from dataclasses import asdict, dataclass, fields
from typing import Dict, Optional

import numpy as np
import torch

from espnet2_pse.inference.chunked import ChunkedEnhancer
from espnet2_pse.spk.refinement import SOURCES, EmbeddingRefiner, enhance_two_pass, enhance_with_refinement

# What a speaker-conditioned separator reads from enroll_ref1.
EMBEDDING, AUDIO = "embedding", "audio"


@dataclass
class RefinementOptions:
    """Inference options of the refinement (seconds, weights, cosine and dBFS thresholds)."""

    window_s: float = 2.0  # W: enhanced seconds the student embeds
    hop_s: float = 0.5  # h: seconds between updates
    alpha: float = 0.7  # weight of the enrollment embedding in the blend
    ema_beta: float = 0.8  # EMA factor of the accepted student embeddings
    cos_threshold: float = 0.3  # theta: updates with cos(student, e_0) <= theta are skipped
    context_s: float = 4.0  # past mixture given to the separator with each hop
    min_level_db: Optional[float] = -50.0  # windows quieter than this (dBFS) are skipped
    source: str = "enhanced"  # the student embeds the "enhanced" output or the "mixture" (ablation)
    session: bool = False  # the refined embedding carries over from one signal to the next
    # Offline: a static pass with e_0, the refiner over all of its output, then one static pass
    # with the refined embedding, so that the separator keeps its future context (the hop loop
    # of a non-causal separator loses it); twice the separator's cost.
    two_pass: bool = False

    def __post_init__(self):
        if self.context_s < 0:
            raise ValueError(f"context_s must be >= 0 seconds, got {self.context_s}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got '{self.source}'")


def conditioning(model) -> Optional[str]:
    """What ``model``'s separator reads from ``enroll_ref1``: EMBEDDING, AUDIO or None (plain).

    AUDIO: the separator embeds enrollment audio with its internal ``speaker_encoder``.
    """
    separator = getattr(model, "separator", None)
    if not hasattr(separator, "speaker_embedding"):
        return None
    return AUDIO if getattr(separator, "speaker_encoder", None) is not None else EMBEDDING


def check_embedding(embedding, model, what: str) -> np.ndarray:
    """(D,) float32 copy of ``embedding`` after checking it fits ``model``'s separator.

    Raises:
        ValueError: not finite, all zero or of another dimension; the message starts with
            ``what`` (the file or key it came from).
    """
    embedding = np.asarray(embedding, dtype=np.float32)
    dim = getattr(model.separator, "embed_dim", None)
    if embedding.ndim > 1 and max(embedding.shape) != embedding.size:
        raise ValueError(f"{what}: a speaker embedding must be a vector, got shape {embedding.shape}")
    embedding = embedding.reshape(-1)
    if dim is not None and embedding.size != dim:
        raise ValueError(f"{what}: {embedding.size}-dim embedding, but the model expects {dim} dims")
    if not np.isfinite(embedding).all() or not np.any(embedding):
        raise ValueError(f"{what}: the embedding must be finite and non-zero")
    return embedding


def _float_or_none(value: str) -> Optional[float]:
    return None if value.lower() == "none" else float(value)


def add_refinement_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--refine`` options to ``parser`` (defaults: :class:`RefinementOptions`)."""
    defaults = RefinementOptions()
    group = parser.add_argument_group(
        "On-the-fly embedding refinement",
        "Speaker-conditioned models only. Every hop the student embeds the last window of "
        "enhanced output, and e_0 blended with the EMA of the accepted embeddings conditions "
        "the next hop. The loop is causal: a hop's embedding depends only on earlier output, "
        "and each hop sees only past mixture (refine_context_s), so a non-causal separator "
        "gives slightly different output than static enhancement even with refine_alpha 1. "
        "Each signal is processed whole in memory.",
    )
    group.add_argument("--refine", action="store_true",
                       help="refine the enrollment embedding from the enhanced output")
    group.add_argument("--student_config", default=None,
                       help="config.yaml of the distilled student (spk_distill_train)")
    group.add_argument("--student_model", default=None,
                       help="checkpoint (.pth) of the distilled student (spk_distill_train)")
    group.add_argument("--refine_window_s", type=float, default=defaults.window_s,
                       help="W: seconds of enhanced output the student embeds")
    group.add_argument("--refine_hop_s", type=float, default=defaults.hop_s,
                       help="h: seconds between embedding updates")
    group.add_argument("--refine_alpha", type=float, default=defaults.alpha,
                       help="weight of the enrollment embedding e_0 in the blend (1: e_0 alone)")
    group.add_argument("--refine_ema_beta", type=float, default=defaults.ema_beta,
                       help="EMA factor of the accepted student embeddings, in [0, 1)")
    group.add_argument("--refine_cos_threshold", type=float, default=defaults.cos_threshold,
                       help="theta: updates whose cosine to e_0 is not above it are skipped")
    group.add_argument("--refine_context_s", type=float, default=defaults.context_s,
                       help="seconds of past mixture given to the separator with each hop")
    group.add_argument("--refine_source", choices=SOURCES, default=defaults.source,
                       help="what the student embeds: the enhanced output (the method) or the "
                       "mixture (input-side ablation)")
    group.add_argument("--refine_session", action="store_true",
                       help="one session: the refined embedding carries over from each file to the next "
                       "(in input order, as on a device that keeps listening), instead of restarting from "
                       "the enrollment embedding for every file")
    group.add_argument("--refine_two_pass", action="store_true",
                       help="offline, not causal: enhance each file with e_0, refine the embedding over the "
                       "whole output (the same windows, gate and blend), then enhance it again with the refined "
                       "embedding; a non-causal separator keeps its future context, which the hop loop loses")
    group.add_argument("--refine_min_level_db", type=_float_or_none,
                       default=defaults.min_level_db,
                       help="windows quieter than this RMS level (dBFS) are skipped; none: never")


def refinement_from_args(args: argparse.Namespace, require_student: bool = True) -> Optional[RefinementOptions]:
    """RefinementOptions from the ``--refine_*`` options; None without ``--refine``.

    Raises:
        ValueError: ``--refine`` without ``--student_model`` (unless ``require_student`` is
            False: the student may come with a packed model), or an invalid value.
    """
    if not args.refine:
        return None
    if require_student and not args.student_model:
        raise ValueError(
            "--refine needs the distilled student: --student_config CONFIG --student_model "
            "MODEL.pth (a spk_distill_train experiment)"
        )
    return RefinementOptions(**{f.name: getattr(args, f"refine_{f.name}") for f in fields(RefinementOptions)})


def load_student(config: Optional[str], model_file: Optional[str], device: str = "cpu") -> torch.nn.Module:
    """A distilled student (spk_distill_train's config.yaml and .pth), in eval mode."""
    from espnet2_pse.tasks.spk_distill import SpkDistillTask

    for name, path in (("student_config", config), ("student_model", model_file)):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{name} {path} does not exist")
    return SpkDistillTask.build_student_from_file(config, model_file, device)


class ConditionedEnhancer(ChunkedEnhancer):
    """Enhance whole signals with a speaker-conditioned separator.

    A :class:`ChunkedEnhancer` that processes each signal in one piece (resampling, file
    handling and checks are its) and, with ``refinement``, replaces the single network pass by
    the causal hop loop.

    Args:
        separate_speech: ESPnet ``SeparateSpeech`` of a model whose separator reads
            ``additional["enroll_ref1"]`` (e.g. ``pconv_tasnet``).
        embedding: (D,) enrollment embedding e_0 (from the teacher, in the space the model
            was trained with); for a model with an internal speaker encoder, (T,) enrollment
            audio at ``model_fs`` instead (static only).
        model_fs: sample rate of the model in Hz.
        student: speaker encoder (B, T) -> (B, D) in the same space; needed for refinement.
        refinement: options of the refinement; None conditions on e_0 alone (static).

    Raises:
        ValueError: refinement without a student, for a model that takes enrollment audio,
            or with invalid options.
    """

    def __init__(
        self,
        separate_speech,
        embedding: np.ndarray,
        model_fs: int = 16000,
        student: Optional[torch.nn.Module] = None,
        refinement: Optional[RefinementOptions] = None,
    ):
        embedding = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if refinement is not None and student is None:
            raise ValueError("refinement needs a student speaker encoder")
        student_dim = student.output_size() if hasattr(student, "output_size") else None
        if refinement is not None and student_dim not in (None, embedding.size):
            raise ValueError(
                f"the student gives {student_dim}-dim embeddings, the enrollment has {embedding.size} dims"
            )
        if refinement is not None and conditioning(separate_speech.enh_model) == AUDIO:
            raise ValueError(
                "refinement needs a model conditioned on speaker embeddings; this one embeds "
                "enrollment audio with its internal speaker_encoder"
            )
        super().__init__(separate_speech, model_fs, chunk_seconds=None, enroll=embedding)
        self.embedding = embedding
        self.student = student
        self.refinement = refinement
        self.last_stats: Dict[str, float] = {}
        self._session: Optional[EmbeddingRefiner] = None
        if refinement is not None:
            self._refiner()  # invalid options fail here, before any signal is processed

    def _refiner(self) -> EmbeddingRefiner:
        """A fresh refiner; in a session, the one that carries the embedding between signals."""
        if self._session is not None:
            return self._session
        options = asdict(self.refinement)
        for loop_option in ("context_s", "source", "session", "two_pass"):
            options.pop(loop_option)
        refiner = EmbeddingRefiner(
            self.student, torch.from_numpy(self.embedding), sample_rate=self.model_fs, **options
        )
        if self.refinement.session:
            self._session = refiner
        return refiner

    def enhance_model_rate(
        self, x: np.ndarray, additional: Optional[Dict[str, torch.Tensor]] = None
    ) -> np.ndarray:
        """(T,) mono float32 at the model rate -> (T,) enhanced.

        With ``refinement`` and no ``additional``: the hop loop; each hop's single pass comes
        back here with its embedding as ``additional``.
        """
        if self.refinement is None or additional is not None:
            return super().enhance_model_rate(x, additional)
        refiner = self._refiner()

        def enhance(segment: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
            conditioning = {"enroll_ref1": embedding[None].to(device=self.device, dtype=self.dtype)}
            return torch.from_numpy(self.enhance_model_rate(segment.numpy(), conditioning))

        if self.refinement.two_pass:
            enhanced, used = enhance_two_pass(enhance, torch.from_numpy(x), refiner, self.refinement.source,
                                              keep_embedding=self.refinement.session)
        else:
            enhanced, used = enhance_with_refinement(
                enhance, torch.from_numpy(x), refiner, self.refinement.context_s, self.model_fs,
                self.refinement.source, keep_embedding=self.refinement.session,
            )
        updates = refiner.accepted + refiner.rejected
        drift = max(0.0, 1.0 - (used @ refiner.enrollment).min().item()) if len(used) else 0.0
        self.last_stats = {
            "updates": updates,
            "accepted": refiner.accepted,
            "accept_rate": refiner.accepted / updates if updates else 0.0,
            "max_cosine_distance_to_enrollment": drift,
        }
        return enhanced.numpy()
