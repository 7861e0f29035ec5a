"""The enhancement model of PSETask: ESPnet's model plus SSL objectives and speaker inputs."""

from typing import Dict, Optional, Tuple

import torch
from espnet2.enh.espnet_model import ESPnetEnhancementModel

from espnet2_pse.losses.wrappers import DP_WEIGHT_KEY, TEACHER_REFERENCE_KEY
from espnet2_pse.ssl.abs_objective import AbsSSLObjective
from espnet2_pse.ssl.mixing import SPEAKER_INDEX_KEY
from espnet2_pse.ssl.teacher import TEACHER_OUTPUT_KEY

# Batch entries handed to the objective and separator through ``additional``: speaker inputs
# of conditioned models, the examples' speaker indices (talker injection avoids them) and a
# teacher's precomputed outputs.
ADDITIONAL_PREFIXES = ("enroll_ref", SPEAKER_INDEX_KEY, TEACHER_OUTPUT_KEY)


class PSEModel(ESPnetEnhancementModel):
    """``ESPnetEnhancementModel`` whose training batches may be built by an SSL objective.

    It adds behaviour, never parameters: its state dict equals the base model's, so a packed
    PSEModel loads into ESPnet's stock ``SeparateSpeech`` once ``espnet2_pse`` is imported.
    In training with an objective, the batch holds only (pseudo-)source speech
    (``speech_ref1``, (B, T)); the objective makes inputs and targets. Otherwise (validation,
    supervised training) it behaves exactly like the base model on ``speech_mix``.
    """

    ssl_objective: Optional[AbsSSLObjective] = None

    @classmethod
    def from_enhancement_model(
        cls, model: ESPnetEnhancementModel, ssl_objective: Optional[AbsSSLObjective]
    ) -> "PSEModel":
        """Turn a model built by ``EnhancementTask.build_model`` into a PSEModel in place.

        Re-classing keeps ESPnet's own construction (every encoder/separator/loss option)
        without copying it; PSEModel defines no ``__init__`` state beyond the objective.
        """
        if type(model) is not ESPnetEnhancementModel:
            raise TypeError(f"expected an ESPnetEnhancementModel, got {type(model).__name__}")
        model.__class__ = cls
        model.ssl_objective = ssl_objective
        model._batch_additional = {}
        return model

    @staticmethod
    def _split_additional(kwargs: Dict) -> Dict[str, torch.Tensor]:
        return {k: v for k, v in kwargs.items() if k.startswith(ADDITIONAL_PREFIXES)}

    def forward(
        self,
        speech_mix: Optional[torch.Tensor] = None,
        speech_mix_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        additional = self._split_additional(kwargs)
        if self.training and self.ssl_objective is not None:
            if "speech_ref1" not in kwargs:
                raise ValueError("SSL training needs speech_ref1 (the spk1.scp of the data dir)")
            lengths = kwargs.get("speech_ref1_lengths")
            return self.ssl_objective(self, kwargs["speech_ref1"], lengths, additional)
        if speech_mix is None:
            raise ValueError(
                "speech_mix (wav.scp) is required outside SSL training: give the data dir's "
                "wav.scp as speech_mix for validation/inference, or set ssl_objective"
            )
        self._batch_additional = additional
        try:
            return super().forward(speech_mix, speech_mix_lengths, **kwargs)
        finally:
            self._batch_additional = {}

    def forward_enhance(self, speech_mix, speech_lengths, additional=None, fs=None):
        merged = {**(additional or {}), **getattr(self, "_batch_additional", {})}
        return super().forward_enhance(speech_mix, speech_lengths, merged, fs=fs)

    def forward_supervised(
        self,
        speech_mix: torch.Tensor,
        speech_lengths: Optional[torch.Tensor],
        target: torch.Tensor,
        additional: Dict[str, torch.Tensor],
        dp_weight: Optional[torch.Tensor] = None,
        teacher_reference: Optional[torch.Tensor] = None,
    ):
        """Enhance ``speech_mix`` (B, T) and score it against ``target`` (B, T).

        The configured ``criterions`` compute the loss; ``dp_weight`` ((B, F) frame or (B,)
        example weights) reaches the loss wrappers through ``others["dp_weight"]``, and
        ``teacher_reference`` (B, T) through ``others["teacher_reference"]`` (for wrappers
        with ``reference: teacher``).
        Returns (loss, stats, weight, enhanced (B, T)).
        """
        if speech_lengths is None:
            speech_lengths = torch.full(
                (speech_mix.shape[0],), speech_mix.shape[1], dtype=torch.long, device=speech_mix.device
            )
        speech_pre, feature_mix, feature_pre, others = self.forward_enhance(
            speech_mix, speech_lengths, additional
        )
        if dp_weight is not None:
            others = {**others, DP_WEIGHT_KEY: dp_weight}
        if teacher_reference is not None:
            others = {**others, TEACHER_REFERENCE_KEY: teacher_reference}
        loss, stats, weight, _ = self.forward_loss(
            speech_pre, speech_lengths, feature_mix, feature_pre, others, [target], num_spk=1
        )
        return loss, stats, weight, speech_pre[0]

    def collect_feats(self, speech_mix=None, speech_mix_lengths=None, **kwargs):
        # SSL data dirs have no wav.scp; stats are collected on the source speech then.
        if speech_mix is None:
            speech_mix = kwargs["speech_ref1"]
            speech_mix_lengths = kwargs.get("speech_ref1_lengths")
        if speech_mix_lengths is None:
            speech_mix_lengths = torch.full(
                (speech_mix.shape[0],), speech_mix.shape[1], dtype=torch.long, device=speech_mix.device
            )
        return super().collect_feats(speech_mix, speech_mix_lengths, **kwargs)
