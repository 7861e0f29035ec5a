"""Framing and overlap-add with reshapes and slices: fast in PyTorch, exportable to ONNX.

``Tensor.unfold`` does not export with a dynamic length and ``conv_transpose1d`` with one
output channel is slow on CPU, so both directions are written with reshapes and slices when
the frame length is a multiple of the hop (every model of this package: kernel 16/stride 8,
kernel 32/stride 16, n_fft 512/hop 128), and with an identity convolution otherwise.
"""

import torch
import torch.nn.functional as F


def eager() -> bool:
    """True outside ONNX export and tracing: in-place operations are then allowed.

    In-place activations and products save a (B, T, N) allocation each, which matters for
    the conv encoder's 512 x 1000-2000 frames per second; exported graphs stay functional.
    """
    return not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


def num_frames(samples: int, frame: int, hop: int) -> int:
    """Frames of ``frame`` samples every ``hop`` samples that fit in ``samples`` (no padding)."""
    return (samples - frame) // hop + 1 if samples >= frame else 0


def frame_signal(x: torch.Tensor, frame: int, hop: int) -> torch.Tensor:
    """(B, T) samples -> (B, K, frame) frames starting at 0, hop, 2 hop, ...

    K = (T - frame) // hop + 1; samples after the last whole frame are ignored, as in an
    unpadded strided convolution. T must be at least ``frame``.
    """
    batch = x.shape[0]
    frames = (x.shape[1] - frame) // hop + 1
    if frame % hop == 0:
        ratio = frame // hop
        blocks = x[:, : (frames + ratio - 1) * hop].reshape(batch, frames + ratio - 1, hop)
        # Frame k is blocks k .. k + ratio - 1 side by side.
        return torch.cat([blocks[:, j : j + frames] for j in range(ratio)], dim=-1)
    eye = torch.eye(frame, dtype=x.dtype, device=x.device)[:, None, :]
    return F.conv1d(x[:, None, :], eye, stride=hop).transpose(1, 2)


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, K, L) frames -> (B, (K - 1) * hop + L): frame k added at sample k * hop."""
    batch, count, length = frames.shape
    if length % hop == 0:
        ratio = length // hop
        out = None
        for j in range(ratio):
            # Part j of every frame lands in output block k + j.
            part = F.pad(frames[:, :, j * hop : (j + 1) * hop], (0, 0, j, ratio - 1 - j))
            out = part if out is None else out + part
        return out.reshape(batch, (count + ratio - 1) * hop)
    eye = torch.eye(length, dtype=frames.dtype, device=frames.device)[:, None, :]
    return F.conv_transpose1d(frames.transpose(1, 2), eye, stride=hop)[:, 0, :]


def fit_length(y: torch.Tensor, length, shortfall: int) -> torch.Tensor:
    """(B, T') -> (B, length): zero-pad on the right by ``shortfall`` then trim.

    ``shortfall`` bounds length - T' (e.g. the hop of a strided decoder). Written without a
    branch on the shapes, so that an exported graph stays right for every input length.
    """
    return F.pad(y, (0, shortfall))[:, :length]
