"""Common machinery of the on-the-fly SSL objectives: mixing, randomness, DP weights."""

import os
from typing import Dict, Optional, Sequence, Union

import torch

from espnet2_pse.data.mixing import mix_at_snr
from espnet2_pse.ssl.abs_objective import AbsSSLObjective
from espnet2_pse.ssl.mixing import TwoStageMixer


def length_mask(lengths: Optional[torch.Tensor], batch: int, length: int, like: torch.Tensor):
    """(B, T) mask of valid samples (all ones for fixed-length chunks)."""
    if lengths is None:
        return torch.ones(batch, length, dtype=like.dtype, device=like.device)
    steps = torch.arange(length, device=like.device)
    return (steps[None, :] < lengths.to(like.device)[:, None]).to(like.dtype)


class OnTheFlyObjective(AbsSSLObjective):
    """Base of objectives that mix premixture and injection noise per batch.

    Args:
        inject_noise_scp: wav.scp of the injection noise bank (training role), or a list of
            wav.scp files pooled into one bank.
        inject_snr_range: [low, high] injection SNR in dB, measured against the pseudo-source.
        premix_noise_scp: wav.scp of the premixture bank; null when the training speech is
            already noisy (a user's own recordings) or clean supervised training is wanted.
        premix_snr_range: [low, high] premixture SNR in dB against the clean speech.
        snr_distribution: "uniform" (paper) or "normal".
        batch_scaling: divide each batch by its max |input| (paper) when true.
        dp_predictor: DP weighting; {config: ..., model_file: ...} of a trained SNR predictor
            (``espnet2_pse.bin.snr_predictor_train``), or null for no weighting.
        sample_rate: Hz of the training audio and the noise banks.
        seed: base seed of the mixing RNG (offset by the distributed rank).
    """

    def __init__(
        self,
        inject_noise_scp: Union[str, Sequence[str]],
        inject_snr_range: Sequence[float] = (-5.0, 5.0),
        premix_noise_scp: Optional[str] = None,
        premix_snr_range: Sequence[float] = (0.0, 15.0),
        snr_distribution: str = "uniform",
        batch_scaling: bool = True,
        dp_predictor: Optional[Dict[str, str]] = None,
        sample_rate: int = 16000,
        seed: int = 0,
    ):
        self.mixer = TwoStageMixer(
            inject_noise_scp,
            inject_snr_range,
            premix_noise_scp,
            premix_snr_range,
            snr_distribution,
            sample_rate,
        )
        self.batch_scaling = batch_scaling
        if dp_predictor is not None and set(dp_predictor) != {"config", "model_file"}:
            raise ValueError(
                f"dp_predictor needs exactly the keys 'config' and 'model_file', got {sorted(dp_predictor)}"
            )
        self.dp_predictor_files = dp_predictor
        self._dp_predictor = None
        self.seed = seed
        self._generator: Optional[torch.Generator] = None

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            # Distinct streams per DDP rank, so ranks do not draw identical noise.
            rank = int(os.environ.get("RANK", 0))
            self._generator = torch.Generator().manual_seed(self.seed + 1000003 * rank)
        return self._generator

    @property
    def uses_dp(self) -> bool:
        return self.dp_predictor_files is not None

    def check_model(self, model) -> None:
        from espnet2_pse.losses.criterions import PSEDistanceLoss
        from espnet2_pse.losses.wrappers import DPWeightedFixedOrder

        if not model.loss_wrappers:
            raise ValueError("SSL training needs at least one entry in 'criterions'")
        first = model.loss_wrappers[0]
        if self.uses_dp and not (
            isinstance(first, DPWeightedFixedOrder) and isinstance(first.criterion, PSEDistanceLoss)
        ):
            raise ValueError(
                "dp_predictor is set, so the first criterion must be "
                "{name: pse_distance, conf: {segmental: true}, wrapper: dp_fixed_order}; got "
                f"criterion {type(first.criterion).__name__} with wrapper {type(first).__name__}"
            )

    def dp_weights(self, pseudo_source: torch.Tensor) -> Optional[torch.Tensor]:
        """(B, F) frame weights sigmoid(predicted SNR of s~), detached; None without DP."""
        if not self.uses_dp:
            return None
        from espnet2_pse.ssl.snr_predictor import dp_weights
        from espnet2_pse.tasks.snr_predictor import load_snr_predictor

        if self._dp_predictor is None:
            self._dp_predictor = load_snr_predictor(
                self.dp_predictor_files["config"],
                self.dp_predictor_files["model_file"],
                device=pseudo_source.device,
            )
        return dp_weights(self._dp_predictor, pseudo_source)

    def inject(self, pseudo_source: torch.Tensor, noise: torch.Tensor, snr: torch.Tensor, mask):
        """x~ = s~ + n scaled to ``snr`` dB against s~; padding stays zero."""
        return mix_at_snr(pseudo_source, noise.to(pseudo_source) * mask, snr.to(pseudo_source))
