"""Criterion of the PSE objectives: negative SNR / SI-SDR / MSE (plain or segmental), compressed spectra, eSTOI or PESQ."""

from typing import Optional

import torch
from espnet2.enh.loss.criterions.time_domain import TimeDomainLoss

from espnet2_pse.losses.distances import DISTANCES, EPS, WHOLE_SIGNAL_ONLY, distance, framewise_distance


class PSEDistanceLoss(TimeDomainLoss):
    """D(inf, ref) of the paper as an ESPnet time-domain criterion.

    YAML: ``{name: pse_distance, conf: {distance: snr, segmental: false}, wrapper: ...}``.
    With ``segmental: true`` the loss is the mean over Hann frames of the per-frame
    distance, and :meth:`framewise` exposes the (B, F) frame losses so that a wrapper
    (``dp_fixed_order``) can weight them.

    Args:
        distance: "snr" (negative SNR, dB; default), "sisdr" (negative SI-SDR, dB), "mse",
            "cspec" (compressed spectral distance, dB), "erb" (compressed ERB-band distance,
            dB), "estoi" (negative eSTOI proxy) or "pesq" (negative raw MOS of a PESQ proxy;
            these four are not segmental): see
            :mod:`espnet2_pse.losses.distances`.
        segmental: frame-wise distance averaged over frames instead of the whole-signal one.
        frame_length: frame length of the segmental version in samples.
        hop_length: frame hop of the segmental version in samples.
        eps: added to both energies of a ratio.
        name: key of the loss in the training statistics; default "pse_<distance>" plus
            "_seg" when segmental (criterion names must be unique within a model).
        only_for_test, is_noise_loss, is_dereverb_loss: as in ESPnet's TimeDomainLoss.
    """

    def __init__(
        self,
        distance: str = "snr",
        segmental: bool = False,
        frame_length: int = 1024,
        hop_length: int = 256,
        eps: float = EPS,
        name: Optional[str] = None,
        only_for_test: bool = False,
        is_noise_loss: bool = False,
        is_dereverb_loss: bool = False,
    ):
        if distance not in DISTANCES:
            raise ValueError(
                f"pse_distance: 'distance' must be one of {DISTANCES}, got '{distance}'"
            )
        if segmental and distance in WHOLE_SIGNAL_ONLY:
            raise ValueError(f"pse_distance: distance '{distance}' has no segmental version (segmental: false)")
        if not 0 < hop_length <= frame_length:
            raise ValueError(
                f"pse_distance: need 0 < hop_length <= frame_length, got "
                f"hop_length={hop_length}, frame_length={frame_length}"
            )
        if name is None:
            name = f"pse_{distance}" + ("_seg" if segmental else "")
        super().__init__(
            name,
            only_for_test=only_for_test,
            is_noise_loss=is_noise_loss,
            is_dereverb_loss=is_dereverb_loss,
        )
        self.distance = distance
        self.segmental = bool(segmental)
        self.frame_length = int(frame_length)
        self.hop_length = int(hop_length)
        self.eps = float(eps)

    def framewise(self, ref: torch.Tensor, inf: torch.Tensor) -> torch.Tensor:
        """Per-frame distance; (B, T), (B, T) -> (B, F), F = T // hop_length + 1."""
        return framewise_distance(
            self.distance, inf, ref, self.frame_length, self.hop_length, eps=self.eps
        )

    def forward(self, ref: torch.Tensor, inf: torch.Tensor) -> torch.Tensor:
        """Distance per example; (B, T), (B, T) -> (B,)."""
        if self.segmental:
            return self.framewise(ref, inf).mean(-1)
        return distance(self.distance, inf, ref, eps=self.eps)

    def extra_repr(self) -> str:
        return (
            f"distance={self.distance}, segmental={self.segmental}, "
            f"frame_length={self.frame_length}, hop_length={self.hop_length}"
        )
