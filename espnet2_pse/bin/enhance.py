#!/usr/bin/env python3
"""Enhance audio files with a trained model: ``python -m espnet2_pse.bin.enhance``.

Examples:
    # a personalized model (personalize output) on a folder tree and two files
    python -m espnet2_pse.bin.enhance --model me.zip recordings/ a.flac b.ogg --out_dir enhanced/
    # a Kaldi-style list (one "key path" per line): writes enhanced/<key>.wav
    python -m espnet2_pse.bin.enhance --model exp/zsl wav.scp --out_dir enhanced/
    # a speaker-conditioned model, static: enrollment audio embedded by the teacher
    python -m espnet2_pse.bin.enhance --model pse_generalist.zip --enroll me.wav \
        --teacher_config exp/spk_teacher/config.yaml --teacher_model exp/spk_teacher/valid.eer.best.pth \
        noisy.wav --out_dir out/
    # ... refined on the fly by the distilled student, from a precomputed embedding
    python -m espnet2_pse.bin.enhance --model pse_generalist.zip --enroll me.npy --refine \
        --student_config exp/spk_student/config.yaml --student_model exp/spk_student/valid.loss.best.pth \
        noisy.wav --out_dir out_refined/

Inputs are files, folders (searched recursively for .wav/.flac/.ogg) and ``.scp`` lists. Any
sample rate and channel count is accepted; the output is ONE channel (the channels are
averaged before enhancement), at the input's sample rate, with the input's length. A folder's
files keep their path relative to that folder under ``--out_dir``; a file given directly is
written as ``--out_dir/<its name>``; an scp entry as ``--out_dir/<key>.wav``. Long files are
processed in overlapping chunks (``--chunk_seconds``, ``--overlap_seconds``), read and written
incrementally, so memory does not grow with the file length. The network runs on a rebuild of
the model for fast CPU inference (``--backend``: "auto" uses it whenever the model allows;
see ``espnet2_pse.inference.backends``), with the same output up to float rounding.

Outputs never replace inputs: the run stops if ``--out_dir`` is an input folder or inside
one, and a file whose output would be an input file is refused. A file that fails (corrupt,
empty, NaN samples, fewer samples than the model's encoder needs, ...) is reported on one
line and the others are still processed; the exit status is 1 if any file failed, 2 for a
usage error (model, enrollment, teacher or student not loadable; --enroll missing for a
speaker-conditioned model or given for a plain one).

Speaker-conditioned models (``pconv_tasnet``) take ``--enroll``: a .npy embedding, or audio.
Audio is embedded by the teacher (``--teacher_config/--teacher_model`` or ``--teacher_tag``)
unless the model has its own internal speaker encoder, which is then given the audio itself.
``--refine`` refines the embedding on the fly with the distilled student (``--student_*``):
each file is then processed whole in memory, hop by hop and causally, and its line reports how
many embedding updates were accepted.
"""

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from espnet2_pse.api import load_from_args
from espnet2_pse.data.audio import AudioError, load_audio, resample
from espnet2_pse.inference.backends import BACKENDS
from espnet2_pse.inference.chunked import ChunkedEnhancer
from espnet2_pse.inference.model_loading import packed_teacher_tag
from espnet2_pse.inference.conditioned import (
    AUDIO,
    ConditionedEnhancer,
    add_refinement_arguments,
    check_embedding,
    conditioning,
    load_student,
    refinement_from_args,
)

INPUT_SUFFIXES = (".wav", ".flac", ".ogg")
DEFAULT_FS = 16000
# scp keys become file names: no separators, no hidden or parent names.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$")


@dataclass
class Job:
    """One input file and its output path relative to ``--out_dir``."""

    src: Path
    rel: Path


def _audio_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)


def _scp_jobs(scp: Path, failures: List[Tuple[str, str]]) -> List[Job]:
    jobs = []
    for lineno, line in enumerate(scp.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        where = f"{scp}:{lineno}"
        if len(parts) != 2:
            failures.append((where, f"expected 'key path', got {line.strip()!r}"))
        elif parts[1].rstrip().endswith("|"):
            failures.append((where, f"key {parts[0]}: pipes are not supported; give a file path"))
        elif not _SAFE_KEY.match(parts[0]):
            failures.append((where, f"key {parts[0]!r} cannot be a file name (use letters, digits, _.@+-)"))
        else:
            src = Path(parts[1].strip())
            jobs.append(Job(src if src.is_absolute() else scp.parent / src, Path(f"{parts[0]}.wav")))
    return jobs


def collect_jobs(inputs: List[str]) -> Tuple[List[Job], List[Tuple[str, str]]]:
    """Expand files, folders and scp lists into jobs; problems come back as (what, reason)."""
    jobs: List[Job] = []
    failures: List[Tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = _audio_files(path)
            if not found:
                failures.append((item, f"folder holds no {'/'.join(INPUT_SUFFIXES)} files"))
            jobs += [Job(f, f.relative_to(path)) for f in found]
        elif path.is_file() and path.suffix == ".scp":
            jobs += _scp_jobs(path, failures)
        elif path.is_file():
            jobs.append(Job(path, Path(path.name)))
        else:
            failures.append((item, "no such file or directory"))
    return jobs, failures


def check_out_dir(out_dir: Path, inputs: List[str]) -> None:
    """Refuse an output folder that is an input folder or lies inside one."""
    out = out_dir.resolve()
    for item in inputs:
        path = Path(item).resolve()
        if path.is_dir() and (out == path or path in out.parents):
            raise ValueError(
                f"--out_dir {out_dir} is {'the' if out == path else 'inside the'} input folder {item}: "
                "outputs could replace inputs or be read as inputs next time; choose another folder"
            )


def plan_outputs(jobs: List[Job], out_dir: Path, failures: List[Tuple[str, str]]) -> List[Tuple[Job, Path]]:
    """Output path per job; drops (and reports) jobs writing onto an input or a taken name."""
    inputs = {job.src.resolve() for job in jobs}
    taken = {}
    planned = []
    for job in jobs:
        dst = out_dir / job.rel
        key = dst.resolve()
        if key in inputs:
            failures.append((str(job.src), f"output {dst} would overwrite an input file"))
        elif key in taken:
            failures.append((str(job.src), f"output {dst} is already written from {taken[key]}"))
        else:
            taken[key] = job.src
            planned.append((job, dst))
    return planned


class UsageError(ValueError):
    """A wrong combination of options or an unusable enrollment/teacher/student (exit 2)."""


_TEACHER_OPTIONS = "--teacher_config/--teacher_model (or --teacher_tag)"


def _embed_with_teacher(args: argparse.Namespace, audio: np.ndarray) -> np.ndarray:
    from espnet2_pse.spk.embedder import load_embedder

    try:
        embed = load_embedder("teacher", args.teacher_config, args.teacher_model, args.teacher_tag, args.device)
        return embed(torch.from_numpy(audio)).cpu().numpy()
    except Exception as err:  # missing files, mismatched weights, no network for a tag, ...
        what = f"--enroll {args.enroll}" if isinstance(args.enroll, str) else "the enrollment audio"
        raise UsageError(f"cannot embed {what} with the teacher: {type(err).__name__}: {err}") from None


def load_enrollment(args: argparse.Namespace, model) -> Optional[np.ndarray]:
    """``enroll_ref1`` for ``model``: a (D,) embedding, (T,) audio at ``--model_fs`` or None.

    ``args.enroll`` is a path (audio, or a .npy embedding) or, from the Python API, an array:
    audio when ``args.enroll_sample_rate`` is set, else an embedding.

    Raises:
        UsageError: naming the options or the file at fault.
    """
    kind = conditioning(model)
    given = args.enroll is not None and not (isinstance(args.enroll, str) and not args.enroll)
    if kind is None:
        if given or args.refine:
            raise UsageError(f"model {args.model} is not speaker-conditioned: drop --enroll and --refine")
        return None
    if not given:
        raise UsageError(
            f"model {args.model} is speaker-conditioned: give --enroll, a .npy speaker embedding or "
            f"enrollment audio (embedded by the teacher given with {_TEACHER_OPTIONS})"
        )
    is_path = isinstance(args.enroll, str)
    what = f"--enroll {args.enroll}" if is_path else "enroll (array)"
    rate = getattr(args, "enroll_sample_rate", None)
    is_embedding = args.enroll.endswith(".npy") if is_path else rate is None

    def audio() -> np.ndarray:
        if is_path:
            return load_audio(args.enroll, sample_rate=args.model_fs)
        if args.enroll.ndim != 1 or not np.isfinite(args.enroll).all() or args.enroll.size == 0:
            raise UsageError(f"{what}: enrollment audio must be finite (T,) mono samples, got shape "
                             f"{args.enroll.shape}")
        return resample(args.enroll, int(rate), args.model_fs) if int(rate) != args.model_fs else args.enroll

    if kind == AUDIO:
        if is_embedding:
            raise UsageError(f"{what}: model {args.model} embeds enrollment audio with its internal "
                             "speaker_encoder; give audio, not an embedding")
        if args.refine:
            raise UsageError(f"--refine needs a model conditioned on speaker embeddings; model {args.model} "
                             "embeds enrollment audio with its internal speaker_encoder")
        if args.teacher_model or args.teacher_tag:
            logging.warning("the teacher is not used: model %s embeds the enrollment audio itself", args.model)
        return audio()
    if is_embedding and is_path:
        try:
            embedding = np.load(args.enroll, allow_pickle=False)
        except Exception as err:  # missing, truncated or not an npy file
            raise UsageError(f"{what}: cannot read the embedding ({err})") from None
    elif is_embedding:
        embedding = args.enroll
    elif not (args.teacher_model or args.teacher_tag):
        raise UsageError(
            f"{what} is audio, but model {args.model} is conditioned on a speaker "
            f"embedding: give the teacher that embeds it with {_TEACHER_OPTIONS}, or a .npy embedding"
        )
    else:
        embedding = _embed_with_teacher(args, audio())
    return check_embedding(embedding, model, what)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Enhance audio files, folders (recursive) or wav.scp lists with a trained model. "
        "Output: mono, at each input's sample rate and length.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files, folders, or .scp lists")
    p.add_argument("--out_dir", required=True, help="output folder (never an input folder)")
    p.add_argument("--model", required=True,
                   help="packed .zip, model dir (config.yaml + .pth, or an unpacked pack), "
                   ".pth next to its config.yaml, or a Hugging Face id owner/name[@revision]")
    p.add_argument("--enroll", default=None,
                   help="speaker-conditioned models: enrollment audio of the target speaker (any rate), "
                   "or a .npy speaker embedding; passed to the separator as enroll_ref1")
    p.add_argument("--teacher_config", default=None,
                   help="config.yaml of the teacher speaker model that embeds --enroll audio "
                   "(the model the conditioned separator was trained with)")
    p.add_argument("--teacher_model", default=None, help="checkpoint (.pth) of that teacher")
    p.add_argument("--teacher_tag", default=None,
                   help="pretrained teacher instead of --teacher_config/--teacher_model: resemblyzer "
                   "(offline) or a model-zoo tag (network or cache)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--chunk_seconds", type=float, default=8.0,
                   help="chunk length in seconds; 0 processes every file in one piece (memory grows with length)")
    p.add_argument("--overlap_seconds", type=float, default=1.0, help="cross-fade between chunks, in seconds")
    p.add_argument("--model_fs", type=int, default=DEFAULT_FS, help="sample rate of the model in Hz")
    p.add_argument("--cache_dir", default=None, help="download cache for Hugging Face models")
    p.add_argument("--num_threads", type=int, default=None,
                   help="torch (and ONNX Runtime) CPU threads; unset: torch's choice")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="what runs the network: the fast PyTorch rebuild (torch; auto picks it when the "
                   "model allows), ONNX Runtime (onnx) or ESPnet's forward_enhance (espnet); all give "
                   "the same output up to float rounding")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_refinement_arguments(p)
    return p


def build_enhancer(args: argparse.Namespace, separate_speech):
    """ChunkedEnhancer (plain or static) or ConditionedEnhancer (--refine).

    Raises:
        UsageError: see :func:`load_enrollment`; also an unusable student or options.
    """
    refinement = refinement_from_args(args)
    enroll = load_enrollment(args, separate_speech.enh_model)
    if refinement is None:
        return ChunkedEnhancer(separate_speech, args.model_fs, args.chunk_seconds or None,
                               args.overlap_seconds, enroll, backend=getattr(args, "backend", "auto"),
                               num_threads=getattr(args, "num_threads", None))
    try:
        student = load_student(args.student_config, args.student_model, args.device)
    except Exception as err:  # missing files, bad YAML, mismatched weights
        raise UsageError(f"cannot load the student {args.student_model}: {type(err).__name__}: {err}") from None
    return ConditionedEnhancer(separate_speech, enroll, args.model_fs, student, refinement)


def use_packed_speaker_encoders(args: argparse.Namespace, extras) -> None:
    """Fill unset --teacher_*/--student_* with the speaker encoders packed with the model.

    The recipe packs a speaker-conditioned model with the teacher whose embedding space it
    was trained in and the student that refines in that space (extras ``spk_<option>``); a
    pretrained teacher is packed as its tag (``spk_teacher_tag``: a YAML file with ``model_tag``).
    """
    given = {"teacher": bool(args.teacher_model or args.teacher_tag), "student": bool(args.student_model)}
    for role, user_given in given.items():
        for option in (f"{role}_config", f"{role}_model"):
            if not user_given and f"spk_{option}" in extras:
                setattr(args, option, str(extras[f"spk_{option}"]))
                logging.info("--%s: the one packed with the model", option)
    if not given["teacher"] and "spk_teacher_tag" in extras:
        args.teacher_tag = packed_teacher_tag(extras)
        logging.info("--teacher_tag %s: the one packed with the model", args.teacher_tag)


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    out_dir = Path(args.out_dir)
    try:
        check_out_dir(out_dir, args.inputs)
        enhancer = load_from_args(args)  # the Python API's espnet2_pse.load
    except (ValueError, OSError) as err:  # ModelNotFoundError, ModelLoadError, UsageError, bad options
        logging.error("%s", err)
        return 2
    engine = enhancer.engine
    if enhancer.enh_model.num_spk != 1:
        logging.warning("the model has %d outputs; writing the first one", enhancer.enh_model.num_spk)

    jobs, failures = collect_jobs(args.inputs)
    planned = plan_outputs(jobs, out_dir, failures)
    for what, reason in failures:
        tqdm.write(f"FAILED {what}: {reason}", file=sys.stderr)
    refused, done = len(failures), 0
    with tqdm(planned, unit="file", desc="enhance", disable=args.quiet, file=sys.stderr) as files_bar:
        for job, dst in files_bar:
            files_bar.set_postfix_str(job.rel.as_posix()[-40:])
            chunks_bar = None

            def on_chunk(i: int, total: int) -> None:
                nonlocal chunks_bar
                if chunks_bar is None and total > 1 and not args.quiet:
                    chunks_bar = tqdm(total=total, unit="chunk", leave=False, file=sys.stderr)
                if chunks_bar is not None:
                    chunks_bar.update(i - chunks_bar.n)

            try:
                result = engine.enhance_file(job.src, dst, on_chunk)
                done += 1
                if result.clipped:
                    logging.warning("%s: %d output samples clipped to [-1, 1]", dst, result.clipped)
                if isinstance(engine, ConditionedEnhancer):
                    stats = engine.last_stats
                    tqdm.write(f"{dst}: refinement accepted {stats['accepted']}/{stats['updates']} "
                               f"embedding updates (accept rate {stats['accept_rate']:.2f}, max cosine "
                               f"distance to the enrollment {stats['max_cosine_distance_to_enrollment']:.3f})")
            except Exception as err:  # one bad file must not stop the others
                reason = err.reason if isinstance(err, AudioError) else f"{type(err).__name__}: {err}"
                tqdm.write(f"FAILED {job.src}: {reason}", file=sys.stderr)
                failures.append((str(job.src), reason))
            finally:
                if chunks_bar is not None:
                    chunks_bar.close()
    logging.info("enhanced %d file(s) into %s; %d failed", done, out_dir, len(failures))
    if failures:
        logging.error("failed (%d of %d):\n%s", len(failures), len(planned) + refused,
                      "\n".join(f"  {what}: {reason}" for what, reason in failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
