"""Speaker-conditioned Conv-TasNet: the target speaker's embedding modulates every TCN block."""

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch_complex.tensor import ComplexTensor

from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip
from espnet2_pse.spk.tiny_encoder import TinySpeakerEncoder

FUSIONS = ("film", "concat")
# Key of the per-forward embedding inside the ``additional`` dict handed to the block hook.
_EMBEDDING_KEY = "_pconv_tasnet_embedding"


class PConvTasNet(ConvTasNetSkip):
    """ConvTasNetSkip conditioned on a target-speaker embedding (registered "pconv_tasnet").

    The embedding comes from ``additional["enroll_ref1"]``:
    - by default a precomputed (B, D) or (B, 1, D) embedding (e.g. an npy scp of teacher
      embeddings given as ``enroll_ref1``; or the refined embedding at inference);
    - with ``speaker_encoder`` set, enrollment audio (B, T) (+ ``enroll_ref1_lengths``),
      embedded inside the separator by a :class:`TinySpeakerEncoder` built from that config
      (initialise it from a distilled student with ESPnet's ``--init_param``; it is part of
      the packed model, so inference needs no extra files).
    The embedding is L2-normalised: teacher and student embeddings are interchangeable.

    Fusion into every block input x (B, bottleneck_dim, T):
    - "film": x * (1 + gamma) + beta, with (gamma, beta) = Linear(D -> 2 * bottleneck_dim)
      per block, zero at initialisation (the network starts as the unconditioned one, so an
      unconditioned generalist can initialise it); adds blocks * (2 * bottleneck_dim * (D + 1))
      parameters;
    - "concat": [x; e repeated over T] into the block's first 1x1 conv (widened, new
      weights start at zero); adds blocks * D * hidden_dim parameters.

    Args:
        input_dim, num_spk, preset, ..., magnitude_exponent: see :class:`ConvTasNetSkip`.
        embed_dim: D, the speaker embedding dimension (192 for ECAPA / RawNet3 teachers).
        fusion: "film" or "concat".
        speaker_encoder: TinySpeakerEncoder keyword arguments, or None for precomputed
            embeddings; its ``embed_dim`` is forced to ``embed_dim``.
        freeze_speaker_encoder: keep the internal encoder's weights fixed during training.
    """

    def __init__(
        self,
        input_dim: int,
        num_spk: int = 1,
        preset: Optional[str] = None,
        layer: Optional[int] = None,
        stack: Optional[int] = None,
        bottleneck_dim: Optional[int] = None,
        hidden_dim: Optional[int] = None,
        skip_dim: Optional[int] = None,
        kernel: Optional[int] = None,
        causal: bool = False,
        norm_type: Optional[str] = None,
        nonlinear: str = "sigmoid",
        magnitude_exponent: float = 1.0,
        embed_dim: int = 192,
        fusion: str = "film",
        speaker_encoder: Optional[Dict] = None,
        freeze_speaker_encoder: bool = True,
    ):
        super().__init__(
            input_dim, num_spk, preset, layer, stack, bottleneck_dim, hidden_dim,
            skip_dim, kernel, causal, norm_type, nonlinear, magnitude_exponent,
        )
        if fusion not in FUSIONS:
            raise ValueError(f"PConvTasNet: fusion '{fusion}' is not one of {FUSIONS}")
        if embed_dim < 1:
            raise ValueError(f"PConvTasNet: embed_dim must be >= 1, got {embed_dim}")
        self.embed_dim = embed_dim
        self.fusion = fusion
        if fusion == "film":
            self.film = torch.nn.ModuleList(
                torch.nn.Linear(embed_dim, 2 * self.bottleneck_dim) for _ in self.blocks
            )
            for layer in self.film:  # identity at the start: the unconditioned network
                torch.nn.init.zeros_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
        else:
            for block in self.blocks:
                block.widen_input(embed_dim)
        self.speaker_encoder = None
        if speaker_encoder is not None:
            self.speaker_encoder = TinySpeakerEncoder(**{**speaker_encoder, "embed_dim": embed_dim})
            if freeze_speaker_encoder:
                self.speaker_encoder.requires_grad_(False)
        self.freeze_speaker_encoder = freeze_speaker_encoder

    def train(self, mode: bool = True):
        super().train(mode)
        if self.speaker_encoder is not None and self.freeze_speaker_encoder:
            self.speaker_encoder.eval()  # frozen BatchNorm statistics too
        return self

    def speaker_embedding(self, additional: Optional[Dict], batch: int) -> torch.Tensor:
        """(B, D) unit-norm embedding from ``additional["enroll_ref1"]``."""
        if not additional or "enroll_ref1" not in additional:
            raise ValueError(
                "PConvTasNet needs the target speaker: pass 'enroll_ref1' (an enroll_spk1.scp "
                "of embeddings (npy) or, with speaker_encoder set, of enrollment audio)"
            )
        enroll = additional["enroll_ref1"]
        if self.speaker_encoder is not None:
            if enroll.dim() != 2:
                raise ValueError(
                    f"enroll_ref1 must be enrollment audio (B, T) for the internal speaker "
                    f"encoder, got shape {tuple(enroll.shape)}"
                )
            embedding = self.speaker_encoder(enroll, additional.get("enroll_ref1_lengths"))
        else:
            if enroll.dim() == 3 and enroll.size(1) == 1:
                enroll = enroll[:, 0]
            if enroll.dim() != 2 or enroll.size(-1) != self.embed_dim:
                raise ValueError(
                    f"enroll_ref1 must be a (B, {self.embed_dim}) speaker embedding, got shape "
                    f"{tuple(enroll.shape)} (enrollment audio needs speaker_encoder set)"
                )
            embedding = enroll
        if embedding.size(0) != batch:
            raise ValueError(f"enroll_ref1 has {embedding.size(0)} rows for a batch of {batch}")
        return F.normalize(embedding.float(), dim=-1)

    def condition_block_input(
        self, x: torch.Tensor, index: int, additional: Optional[Dict]
    ) -> torch.Tensor:
        """FiLM or concatenation of the embedding on block ``index``'s input (B, C, T)."""
        embedding = additional[_EMBEDDING_KEY].to(x.dtype)
        if self.fusion == "film":
            gamma, beta = self.film[index](embedding).unsqueeze(-1).chunk(2, dim=1)
            return x * (1.0 + gamma) + beta
        return torch.cat([x, embedding.unsqueeze(-1).expand(-1, -1, x.size(-1))], dim=1)

    def forward(
        self,
        input: Union[torch.Tensor, ComplexTensor],
        ilens: torch.Tensor,
        additional: Optional[Dict] = None,
    ) -> Tuple[List[Union[torch.Tensor, ComplexTensor]], torch.Tensor, OrderedDict]:
        """As :meth:`ConvTasNetSkip.forward`; ``additional["enroll_ref1"]`` is required."""
        embedding = self.speaker_embedding(additional, input.shape[0])
        # Computed once per forward and handed to every block through a copy of the dict.
        return super().forward(input, ilens, {**additional, _EMBEDDING_KEY: embedding})
