"""A frozen enhancement model whose outputs are pseudo-targets (zero-shot test-time adaptation).

The user's recordings are noisy, so PseudoSE's target s~ keeps their background. A generalist
that already enhances reasonably gives a cleaner target: its output on s~. The teacher is a
plain attribute of the objective, never a submodule of the trained model, so it does not
enter the saved state dict (like the DP predictor).

The teacher's outputs on a fixed set of recordings never change, so :func:`write_teacher_outputs`
computes them once per recording (whole files: the teacher sees more context than a crop) and
the training batches carry them under ``TEACHER_OUTPUT_KEY``; PseudoSE then skips the teacher.
"""

import hashlib
import logging
import time
from pathlib import Path
from typing import Union

import torch
import yaml

logger = logging.getLogger(__name__)

# Data name of the teacher's precomputed outputs (an scp of float WAVs, one per training
# recording); ESPnet's chunk iterator crops them together with speech_ref1.
TEACHER_OUTPUT_KEY = "teacher_ref1"


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


def _fingerprint(*paths: Union[str, Path]) -> str:
    """Changes when any file's path, size or modification time does."""
    parts = []
    for path in paths:
        stat = Path(path).stat()
        parts.append(f"{Path(path).resolve()} {stat.st_size} {stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def write_teacher_outputs(config_yaml: Union[str, Path], model_file: Union[str, Path],
                          scp: Union[str, Path], out_dir: Union[str, Path]) -> Path:
    """Enhance every recording of ``scp`` with the teacher; returns ``<out_dir>/teacher.scp``.

    The outputs are float WAVs of the input's exact length (the chunk iterator crops them with
    it). Outputs of the same teacher and recordings are reused; ``teacher.scp`` is written last,
    so an interrupted run leaves no table that points at missing files.
    """
    from espnet2_pse.data.kaldi_dir import read_table, write_table
    from espnet2_pse.scoring.files import atomic_write_text, load_mono, write_float_wav

    out_dir = Path(out_dir)
    table_path, source_path = out_dir / "teacher.scp", out_dir / "source.yaml"
    source = {"teacher": _fingerprint(config_yaml, model_file), "recordings": _fingerprint(scp)}
    if table_path.is_file() and source_path.is_file() and yaml.safe_load(source_path.read_text()) == source:
        logger.info("teacher outputs: reusing %s", table_path)
        return table_path
    table_path.unlink(missing_ok=True)
    recordings = read_table(scp)
    teacher = load_teacher(config_yaml, model_file)
    start, outputs = time.monotonic(), {}
    for i, (key, path) in enumerate(recordings.items(), 1):
        samples, rate = load_mono(path, key)
        speech = torch.from_numpy(samples).float()[None]
        cleaned = teacher_outputs(teacher, speech)[0].numpy()
        if cleaned.shape[0] != speech.shape[1]:
            raise RuntimeError(f"teacher output of '{key}' has {cleaned.shape[0]} samples, the input {speech.shape[1]}")
        outputs[key] = write_float_wav(out_dir / f"{key}.wav", cleaned, rate)
        if i % 50 == 0 or i == len(recordings):
            logger.info("teacher outputs: %d/%d recordings (%.1f s)", i, len(recordings), time.monotonic() - start)
    atomic_write_text(source_path, yaml.safe_dump(source))
    write_table(table_path, outputs)
    return table_path
