"""A frozen enhancement model whose outputs are pseudo-targets (zero-shot test-time adaptation).

The user's recordings are noisy, so PseudoSE's target s~ keeps their background. A generalist
that already enhances reasonably gives a cleaner target: its output on s~. The teacher is a
plain attribute of the objective, never a submodule of the trained model, so it does not
enter the saved state dict (like the DP predictor).
"""

from pathlib import Path
from typing import Union

import torch


def load_teacher(config_yaml: Union[str, Path], model_file: Union[str, Path],
                 device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """The enhancement model of a training run (config.yaml + weights), frozen, in eval mode.

    Unlike ESPnet's ``build_model_from_file`` (``strict=False``), every weight must load.
    """
    from espnet2_pse.tasks.pse import PSETask

    for path in (config_yaml, model_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"teacher: no such file: {path}")
    model, _ = PSETask.build_model_from_file(str(config_yaml), None, str(device))
    state = torch.load(model_file, map_location=str(device), weights_only=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"teacher weights in {model_file} do not match {config_yaml}: {e}") from None
    model.ssl_objective = None  # its own training objective (noise banks, ...) is not needed
    model.eval().requires_grad_(False)
    return model.to(device)


@torch.no_grad()
def teacher_outputs(teacher: torch.nn.Module, speech: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T): the teacher's enhancement of each row."""
    lengths = torch.full((speech.shape[0],), speech.shape[1], dtype=torch.long, device=speech.device)
    enhanced = teacher.forward_enhance(speech, lengths)[0][0]
    return enhanced[..., : speech.shape[1]]
