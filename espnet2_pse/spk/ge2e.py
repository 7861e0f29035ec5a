"""A pretrained GE2E speaker encoder that runs offline: the weights shipped in Resemblyzer's wheel.

Used for speaker similarity (scoring) and as a speaker teacher (``model_tag`` ``resemblyzer``).

The PyPI package ``resemblyzer`` (0.1.4, Apache-2.0) carries ``resemblyzer/pretrained.pt``, a
GE2E speaker encoder trained on thousands of real speakers. Importing that package pulls
``webrtcvad`` (used only to trim silences), so this module reads the state dict into a network
of its own and never imports it; ``pip install --no-deps resemblyzer==0.1.4`` is enough
(``make -C tools`` does it).

Network (from the checkpoint's hyper-parameters): 40-band mel power spectrogram (25-ms window,
10-ms hop, 16 kHz), 3-layer LSTM of 256 units, linear layer to 256, ReLU, L2 norm. An
utterance's embedding is the L2-normalised mean of the embeddings of 1.6-s partial windows
(160 frames, 1.3 windows per second; the last window is kept when it is at least 75 % covered),
after its level is raised to -30 dBFS when quieter. Silence trimming (webrtcvad) is not done.
"""

import importlib.util
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

SAMPLE_RATE = 16000
N_MELS = 40
WIN = 400  # 25 ms
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s
PARTIALS_PER_SECOND = 1.3
MIN_COVERAGE = 0.75
TARGET_DBFS = -30.0
INSTALL_HINT = "pip install --no-deps resemblyzer==0.1.4 (make -C tools installs it)"


def pretrained_path() -> Path:
    """Path of ``pretrained.pt`` in the installed ``resemblyzer`` package (not imported)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the GE2E speaker encoder needs the resemblyzer wheel's weights: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: resemblyzer is installed without its pretrained.pt ({INSTALL_HINT})")
    return path


class GE2EEncoder(torch.nn.Module):
    """GE2E speaker encoder: (B, frames, 40) mel power spectra -> (B, 256) unit embeddings."""

    def __init__(self, hidden: int = 256, layers: int = 3, dim: int = 256):
        super().__init__()
        self.lstm = torch.nn.LSTM(N_MELS, hidden, layers, batch_first=True)
        self.linear = torch.nn.Linear(hidden, dim)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


class GE2ETeacher(torch.nn.Module):
    """The pretrained encoder with its front end, batched: the call of an ESPnet speaker model.

    ``model(speech, speech_lengths, extract_embd=True)`` takes (B, T) 16-kHz waveforms and
    gives (B, 256) unit embeddings, so :class:`~espnet2_pse.spk.teacher.FrozenTeacher`, the
    distillation and the enrollment use it as they use an ECAPA teacher
    (``--teacher_model_tag resemblyzer``).

    Args:
        weights: a checkpoint with ``model_state`` (default: Resemblyzer's ``pretrained.pt``).
    """

    embed_dim = 256

    def __init__(self, weights: Optional[Union[str, Path]] = None):
        super().__init__()
        import librosa

        path = Path(weights) if weights else pretrained_path()
        state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
        self.encoder = GE2EEncoder()
        # The checkpoint also holds GE2E's training-only similarity scale and bias.
        self.encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=WIN, n_mels=N_MELS).astype(np.float32)
        self.register_buffer("mel_basis", torch.from_numpy(mel), persistent=False)
        self.register_buffer("window", torch.hann_window(WIN), persistent=False)
        self.eval()

    def _mels(self, wav: torch.Tensor) -> torch.Tensor:
        """(T,) -> (frames, 40) mel power spectrogram (centred, zero-padded Hann frames)."""
        spec = torch.stft(wav, WIN, HOP, window=self.window, center=True, pad_mode="constant",
                          return_complex=True).abs() ** 2
        return (self.mel_basis @ spec).T

    @staticmethod
    def _window_starts(samples: int) -> np.ndarray:
        """Frame index of every partial window of an utterance of ``samples`` samples."""
        frames = int(np.ceil((samples + 1) / HOP))
        step = int(round(SAMPLE_RATE / PARTIALS_PER_SECOND / HOP))
        starts = np.arange(0, max(1, frames - PARTIAL_FRAMES + step + 1), step)
        coverage = (samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
        return starts[:-1] if coverage < MIN_COVERAGE and len(starts) > 1 else starts

    def _windows(self, wav: torch.Tensor) -> torch.Tensor:
        """(T,) utterance -> (N, 160, 40) mel partial windows, after the level is raised to -30 dBFS."""
        rms = wav.double().pow(2).mean().sqrt()
        if rms > 0:
            gain_db = TARGET_DBFS - 20 * torch.log10(rms)
            if gain_db > 0:  # only raised, as the encoder was trained
                wav = wav * (10 ** (gain_db / 20)).float()
        starts = self._window_starts(len(wav))
        end = int(starts[-1] + PARTIAL_FRAMES) * HOP
        if end >= len(wav):
            wav = torch.nn.functional.pad(wav, (0, end - len(wav)))
        mels = self._mels(wav)
        return torch.stack([mels[s:s + PARTIAL_FRAMES] for s in starts])

    @torch.no_grad()
    def forward(self, speech: torch.Tensor, speech_lengths: Optional[torch.Tensor] = None,
                extract_embd: bool = True) -> torch.Tensor:
        """(B, T) waveforms (``speech_lengths`` valid samples each) -> (B, 256) unit embeddings:
        the normalised mean of each utterance's partial-window embeddings."""
        if not extract_embd:
            raise ValueError("the GE2E teacher only extracts embeddings")
        if speech.dim() != 2 or speech.shape[1] == 0:
            raise ValueError(f"GE2E: expected (batch, samples) waveforms, got shape {tuple(speech.shape)}")
        lengths = [speech.shape[1]] * len(speech) if speech_lengths is None else speech_lengths.tolist()
        windows = [self._windows(row[:int(n)].float()) for row, n in zip(speech, lengths)]
        partial = self.encoder(torch.cat(windows))
        means = torch.stack([chunk.mean(0) for chunk in partial.split([len(w) for w in windows])])
        return torch.nn.functional.normalize(means, dim=-1)


class GE2E:
    """One numpy waveform at any rate -> its (256,) embedding (speaker similarity scores).

    Args:
        weights: as for :class:`GE2ETeacher`.
    """

    def __init__(self, weights: Optional[Union[str, Path]] = None):
        self.model = GE2ETeacher(weights)

    def embed(self, wav: np.ndarray, fs: int = SAMPLE_RATE) -> np.ndarray:
        """(T,) waveform at ``fs`` Hz -> (256,) float32 unit embedding."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1 or len(wav) == 0:
            raise ValueError(f"GE2E: expected a non-empty 1-D waveform, got shape {wav.shape}")
        if fs != SAMPLE_RATE:
            import soxr

            wav = soxr.resample(wav, fs, SAMPLE_RATE).astype(np.float32)
        return self.model(torch.from_numpy(wav)[None])[0].numpy()
