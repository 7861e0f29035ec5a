"""PseudoSE: learn to map a further-corrupted recording back to the recording itself."""

from typing import Dict, Optional

import torch

from espnet2_pse.ssl.mixing import scale_batch
from espnet2_pse.ssl.on_the_fly import OnTheFlyObjective, length_mask


class PseudoSE(OnTheFlyObjective):
    """f(s~ + n) -> s~, with s~ the pseudo-source (methods.md, PART 1, 1.4(a)).

    With ``premix_noise_scp`` null and clean speech as data, this is ordinary supervised
    enhancement with on-the-fly noise: the generalist and few-shot fine-tuning use it so.
    All constructor arguments are those of :class:`OnTheFlyObjective`.
    """

    def make_batch(self, speech: torch.Tensor, mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(B, T) speech crops -> dict of (B, T) ``input`` and ``target`` and (B,) ``snr`` (dB)."""
        batch, length = speech.shape
        target = self.mixer.pseudo_source(speech, self.generator) * mask
        noise, snr = self.mixer.injection(batch, length, self.generator)
        mixture = self.inject(target, noise, snr, mask)
        if self.batch_scaling:
            mixture, target = scale_batch(mixture, target)
        return {"input": mixture, "target": target, "snr": snr}

    def __call__(
        self,
        model,
        speech: torch.Tensor,
        speech_lengths: Optional[torch.Tensor],
        additional: Dict[str, torch.Tensor],
    ):
        batch, length = speech.shape
        made = self.make_batch(speech, length_mask(speech_lengths, batch, length, speech))
        loss, stats, weight, _ = model.forward_supervised(
            made["input"],
            speech_lengths,
            made["target"],
            additional,
            dp_weight=self.dp_weights(made["target"]),
        )
        return loss, stats, weight
