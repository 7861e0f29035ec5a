"""Mask nonlinearities shared by the mask-estimating separators of this package."""

import torch

MASK_NONLINEARS = ("sigmoid", "relu", "softmax")


def check_mask_nonlinear(owner: str, nonlinear: str, num_spk: int) -> None:
    """Raise ValueError naming ``owner`` if ``nonlinear`` cannot be used with ``num_spk`` masks."""
    if nonlinear not in MASK_NONLINEARS:
        raise ValueError(f"{owner}: nonlinear '{nonlinear}' is not one of {MASK_NONLINEARS}")
    if nonlinear == "softmax" and num_spk < 2:
        raise ValueError(
            f"{owner}: nonlinear 'softmax' normalises over speakers and needs num_spk >= 2, "
            f"got num_spk={num_spk}"
        )


def apply_mask_nonlinear(scores: torch.Tensor, nonlinear: str, spk_dim: int) -> torch.Tensor:
    """Turn raw scores into masks; "softmax" normalises over the speaker axis ``spk_dim``."""
    if nonlinear == "sigmoid":
        return torch.sigmoid(scores)
    if nonlinear == "relu":
        return torch.relu(scores)
    if nonlinear == "softmax":
        return torch.softmax(scores, dim=spk_dim)
    raise ValueError(f"nonlinear '{nonlinear}' is not one of {MASK_NONLINEARS}")
