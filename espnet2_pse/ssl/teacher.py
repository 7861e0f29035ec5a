"""A frozen enhancement model whose outputs are pseudo-targets (zero-shot test-time adaptation).

The user's recordings are noisy, so PseudoSE's target s~ keeps their background. A generalist
that already enhances reasonably gives a cleaner target: its output on s~. The teacher is a
plain attribute of the objective, never a submodule of the trained model, so it does not
enter the saved state dict (like the DP predictor).

The teacher's outputs on a fixed set of recordings never change, so :func:`write_teacher_outputs`
computes them once per recording (whole files: the teacher sees more context than a crop) and
the training batches carry them under ``TEACHER_OUTPUT_KEY``; PseudoSE then skips the teacher.
Its outputs also rank the recordings by how noisy they are (:func:`cleanest_segments`).
"""

import logging
import time
from pathlib import Path
from typing import Union

import numpy as np
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


def write_teacher_outputs(config_yaml: Union[str, Path], model_file: Union[str, Path],
                          scp: Union[str, Path], out_dir: Union[str, Path]) -> Path:
    """Enhance every recording of ``scp`` with the teacher; returns ``<out_dir>/teacher.scp``.

    The outputs are float WAVs of the input's exact length (the chunk iterator crops them with
    it). Outputs of the same teacher and recordings are reused; ``teacher.scp`` is written last,
    so an interrupted run leaves no table that points at missing files.
    """
    from espnet2_pse.data.kaldi_dir import read_table, write_table
    from espnet2_pse.scoring.files import atomic_write_text, files_fingerprint, load_mono, write_float_wav

    out_dir = Path(out_dir)
    table_path, source_path = out_dir / "teacher.scp", out_dir / "source.yaml"
    # By content: a packed base is unpacked anew on every run of personalize.
    source = {"teacher": files_fingerprint(config_yaml, model_file, content=True), "recordings": files_fingerprint(scp)}
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


def estimated_snr_db(recording: np.ndarray, cleaned: np.ndarray) -> float:
    """The teacher's estimate of a recording's SNR in dB: what it keeps against what it removes
    (a silent recording, 0 / 0, ranks last: -inf)."""
    from espnet2_pse.scoring.metrics import snr

    return float(np.nan_to_num(snr(cleaned, recording), nan=-np.inf, posinf=np.inf, neginf=-np.inf))


def cleanest_segments(segments, teacher_table: Union[str, Path], share: float, min_seconds: float,
                      out_dir: Union[str, Path]):
    """The data dir ``segments`` cut to its least noisy ``share`` of audio, written to ``out_dir``.

    PseudoSE's targets keep each recording's background; the noisiest recordings teach the model
    to keep the most of it. Segments are ranked by the teacher's SNR estimate
    (:func:`estimated_snr_db`, from ``teacher_table``, :func:`write_teacher_outputs`'s table for
    ``segments``) and kept, cleanest first, until they hold ``share`` of the audio and at least
    ``min_seconds`` (all of it when shorter).

    Args:
        segments: a :class:`espnet2_pse.data.kaldi_dir.DataDir`.
        teacher_table: key -> the teacher's output of that segment.
        share: in (0, 1].
        min_seconds: the least audio kept.
        out_dir: the subset's data dir (replaced atomically).
    Returns:
        the subset's DataDir.
    """
    from espnet2_pse.data.kaldi_dir import read_table, write_data_dir
    from espnet2_pse.scoring.files import load_mono

    if not 0.0 < share <= 1.0:
        raise ValueError(f"cleanest_segments: share must be in (0, 1], got {share}")
    cleaned = read_table(teacher_table)
    missing = sorted(set(segments.keys) - set(cleaned))
    if missing:
        raise ValueError(f"{teacher_table}: no teacher output for segment '{missing[0]}' ({len(missing)} missing)")
    estimates = {key: estimated_snr_db(load_mono(segments.spk1[key], key)[0], load_mono(cleaned[key], key)[0])
                 for key in segments.keys}
    durations = segments.utt2dur
    wanted = max(share * segments.total_seconds(), min_seconds)
    kept, seconds = [], 0.0
    for key in sorted(estimates, key=estimates.get, reverse=True):
        if seconds >= wanted:
            break
        kept.append(key)
        seconds += durations[key]
    own = ("wav.scp", "utt2spk", "spk1.scp", "utt2dur")  # utt2dur is derived again
    extra = {name: {k: table[k] for k in kept} for name, table in segments.tables.items() if name not in own}
    subset = write_data_dir(out_dir, {k: segments.wav[k] for k in kept}, {k: segments.utt2spk[k] for k in kept},
                            spk1={k: segments.spk1[k] for k in kept}, extra=extra)
    logger.info("zero-shot training on the %d least noisy of %d segments (%.1f of %.1f min; the teacher's SNR "
                "estimate %.1f dB and above)", len(kept), len(estimates), seconds / 60,
                segments.total_seconds() / 60, estimates[kept[-1]])
    return subset
