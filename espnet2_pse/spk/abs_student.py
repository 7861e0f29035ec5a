"""Abstract base of the small speaker encoders distilled from a large teacher."""

from abc import ABC, abstractmethod
from typing import Optional

import torch


class AbsSpkStudent(torch.nn.Module, ABC):
    """Waveform -> unit-norm speaker embedding in the teacher's space.

    The embedding is compared with teacher embeddings by cosine similarity, so every
    implementation returns L2-normalised vectors of dimension ``output_size()``.
    """

    @abstractmethod
    def output_size(self) -> int:
        """Embedding dimension D (the teacher's)."""
        raise NotImplementedError

    @abstractmethod
    def forward(
        self, speech: torch.Tensor, speech_lengths: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Embed a batch of waveforms.

        Args:
            speech: (B, T) waveform, samples at the model's sample rate.
            speech_lengths: (B,) valid samples per row; None means all T are valid.
        Returns:
            (B, D) L2-normalised embeddings.
        """
        raise NotImplementedError
