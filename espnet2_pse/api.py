"""Python API: load a model, enhance arrays, files and streams, export it; personalize.

    import espnet2_pse

    enhancer = espnet2_pse.load("me.zip")             # packed zip, model dir, .pth or HF id
    clean = enhancer(noisy, 44100)                     # (T,) or (T, C) at any rate -> (T,) at that rate
    enhancer.enhance_file("noisy.flac", "clean.flac")  # mono, the input's rate, length and format
    session = enhancer.stream()                        # causal models: chunks of any size
    out = [session.push(chunk) for chunk in chunks] + [session.finish()]
    enhancer.export_onnx("me.onnx", streaming=True)
    conditioned = espnet2_pse.load("espnet2_pse/pretrained/conditioned_stft.zip", enroll="me.wav")
    mine = espnet2_pse.personalize("my_recordings/", "me.zip", clean_dir="my_clean/")

The command-line tools are thin wrappers over this module: ``pse-enhance`` builds its
enhancer with :func:`load_from_args` and ``pse-personalize`` runs the same
:func:`espnet2_pse.bin.personalize.personalize` as :func:`personalize`.
"""

import argparse
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

PathLike = Union[str, Path]


class ModelLoadError(ValueError):
    """A model that exists but cannot be built (bad YAML, unknown class names, wrong weights)."""


class Enhancer:
    """A loaded model; see :func:`load`.

    Attributes:
        model: the model reference it was loaded from.
        sample_rate: the model's sample rate in Hz (inputs at other rates are resampled).
        conditioned: True for a speaker-conditioned model (it was given an enrollment).
        enh_model: the underlying ESPnet ``ESPnetEnhancementModel`` (eval mode).
        engine: what runs it: :class:`espnet2_pse.inference.chunked.ChunkedEnhancer`, or
            :class:`espnet2_pse.inference.conditioned.ConditionedEnhancer` when refining
            (its ``last_stats`` count the accepted embedding updates of the last signal).
    """

    def __init__(self, model: str, engine, sample_rate: int, unpacked: tempfile.TemporaryDirectory):
        from espnet2_pse.inference.conditioned import conditioning

        self.model = model
        self.sample_rate = int(sample_rate)
        self.engine = engine
        self._unpacked = unpacked  # the unpacked zip lives as long as the enhancer
        self.enh_model = engine.model
        self.conditioned = conditioning(engine.model) is not None

    def __call__(self, wav, sample_rate: int) -> np.ndarray:
        """Enhance one signal.

        Args:
            wav: (T,) mono, (T, C) channels last (soundfile's layout) or (C, T) channels first
                (torchaudio's; taken as such when it has fewer rows than columns) float
                samples; a numpy array, a list or a torch tensor. Channels are averaged.
            sample_rate: its rate in Hz.
        Returns:
            (T,) float32 enhanced mono at ``sample_rate``, as long as the input.
        Raises:
            ValueError: empty, non-finite, more than 2-D, or shorter than the model's
                encoder needs.
        """
        x = _as_signal(wav)
        if int(sample_rate) <= 0:
            raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
        return self.engine.enhance_array(x, int(sample_rate))

    def enhance_file(self, path: PathLike, out_path: PathLike, on_chunk: Optional[Callable[[int, int], None]] = None):
        """Enhance an audio file into ``out_path`` (mono, the input's rate and length; the
        container follows ``out_path``'s suffix). Written under a temporary name and renamed,
        so nothing is left on failure. ``on_chunk(done, total)`` follows long files.

        Returns:
            :class:`espnet2_pse.inference.chunked.EnhanceResult` (frames, rate, channels,
            chunks, clipped samples).
        Raises:
            espnet2_pse.data.audio.AudioError: unreadable, empty, non-finite or too short
                input; the message names the file.
        """
        if Path(out_path).resolve() == Path(path).resolve():
            raise ValueError(f"{out_path}: the output would overwrite its input")
        return self.engine.enhance_file(Path(path), Path(out_path), on_chunk)

    def stream(self):
        """A causal streaming session at :attr:`sample_rate`: ``push(chunk)`` takes (n,)
        float samples (any n) and returns the samples that became final, ``finish()`` the
        rest, so that all outputs together are as long as all inputs. The numbers are those
        of ``pse-export --streaming`` run by ONNX Runtime (up to float rounding).

        Raises:
            espnet2_pse.export.fast_model.UnsupportedModelError: the model is not causal
                (``personalize --causal`` makes causal models) or cannot stream; the reason is
                named.
        """
        from espnet2_pse.export.fast_model import UnsupportedModelError
        from espnet2_pse.export.streaming import StreamSession, torch_step

        if self.conditioned:
            raise UnsupportedModelError("speaker-conditioned models do not stream yet; use enhancer(wav, rate)")
        stream = self._streaming_module()
        return StreamSession(torch_step(stream), stream.spec)

    def export_onnx(self, path: PathLike, streaming: bool = False) -> Path:
        """Write the model as an ONNX graph, as ``pse-export`` does: the whole-signal graph
        ``speech (B, T) -> enhanced (B, T)``, or with ``streaming`` the hop-by-hop graph with
        its states (metadata: the stream spec). Returns the path written.

        Raises:
            espnet2_pse.export.fast_model.UnsupportedModelError: the model cannot be exported
                (or, streaming, is not causal).
        """
        from espnet2_pse.export.fast_model import FastEnhancer, UnsupportedModelError
        from espnet2_pse.export.onnx_export import export_streaming, export_whole

        if self.conditioned:
            raise UnsupportedModelError("speaker-conditioned models have no ONNX export yet")
        if streaming:
            return export_streaming(self._streaming_module(), path)
        return export_whole(FastEnhancer.from_espnet(self.enh_model), path, self.sample_rate)

    def _streaming_module(self):
        from espnet2_pse.export.fast_model import FastEnhancer
        from espnet2_pse.export.streaming import StreamingEnhancer

        return StreamingEnhancer(FastEnhancer.from_espnet(self.enh_model), self.sample_rate)

    def __repr__(self) -> str:
        kind = "speaker-conditioned " if self.conditioned else ""
        return f"Enhancer({self.model!r}, {kind}{self.sample_rate} Hz)"


def _as_signal(wav) -> np.ndarray:
    """(T,) or (T, C) float32 from an array-like; (C, T) is transposed."""
    if hasattr(wav, "detach"):  # a torch tensor
        wav = wav.detach().cpu().numpy()
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] < x.shape[1]:
        x = x.T
    if x.ndim not in (1, 2) or x.size == 0:
        raise ValueError(f"expected (T,) or (T, C) audio samples, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the signal contains NaN or Inf samples")
    return x


def load(
    model: PathLike,
    enroll=None,
    *,
    enroll_sample_rate: Optional[int] = None,
    refine: bool = False,
    refine_options=None,
    teacher_config: Optional[PathLike] = None,
    teacher_model: Optional[PathLike] = None,
    teacher_tag: Optional[str] = None,
    student_config: Optional[PathLike] = None,
    student_model: Optional[PathLike] = None,
    sample_rate: int = 16000,
    device: str = "cpu",
    backend: str = "auto",
    chunk_seconds: Optional[float] = 8.0,
    overlap_seconds: float = 1.0,
    num_threads: Optional[int] = None,
    cache_dir: Optional[PathLike] = None,
) -> Enhancer:
    """Load a model for enhancement (what ``pse-enhance`` runs).

    Args:
        model: a packed .zip (``personalize``, the recipe's stage 8, ``pretrained/``), a model
            dir (config.yaml + .pth, or an unpacked pack), a .pth next to its config.yaml, or a
            Hugging Face id ``owner/name[@revision]``.
        enroll: speaker-conditioned models only: the target speaker, as an audio file or a
            .npy embedding (paths), as audio samples with ``enroll_sample_rate``, or as a (D,)
            embedding (an array without ``enroll_sample_rate``). Audio is embedded by the
            teacher packed with the model (or the ``teacher_*`` one).
        enroll_sample_rate: rate of ``enroll`` samples in Hz (marks the array as audio).
        refine: refine the embedding on the fly with the student (packed with the model or
            ``student_*``); each signal is then processed whole.
        refine_options: :class:`espnet2_pse.inference.conditioned.RefinementOptions` (None:
            its defaults, those of ``pse-enhance --refine``).
        teacher_config, teacher_model, teacher_tag, student_config, student_model: speaker
            encoders other than the packed ones (as the command's options).
        sample_rate: the model's rate in Hz.
        device: "cpu", "cuda" or "cuda:N".
        backend: "auto", "torch", "onnx" or "espnet" (see ``espnet2_pse.inference.backends``).
        chunk_seconds, overlap_seconds: long signals are enhanced in chunks of this length
            with this cross-fade (None: whole signals).
        num_threads: CPU threads of ONNX Runtime (backend "onnx").
        cache_dir: download cache of Hugging Face models.
    Raises:
        espnet2_pse.inference.model_loading.ModelNotFoundError: no such model.
        ModelLoadError: the model cannot be built.
        ValueError: a wrong enrollment or option combination (the message says which).
    """
    from espnet2_pse.bin.enhance import get_parser

    args = get_parser().parse_args(["-", "--out_dir", "-", "--model", str(model)])
    paths = dict(teacher_config=teacher_config, teacher_model=teacher_model, student_config=student_config,
                 student_model=student_model, cache_dir=cache_dir)
    for name, value in paths.items():
        setattr(args, name, None if value is None else str(value))
    if isinstance(enroll, Path):
        enroll = str(enroll)
    elif enroll is not None and not isinstance(enroll, str):
        enroll = np.asarray(enroll.detach().cpu().numpy() if hasattr(enroll, "detach") else enroll, np.float32)
    args.enroll, args.enroll_sample_rate = enroll, enroll_sample_rate
    args.teacher_tag, args.refine, args.device, args.backend = teacher_tag, refine, device, backend
    args.model_fs, args.chunk_seconds, args.overlap_seconds, args.num_threads = (
        sample_rate, chunk_seconds, overlap_seconds, num_threads)
    if refine_options is not None:
        for name, value in vars(refine_options).items():
            setattr(args, f"refine_{name}", value)
    return load_from_args(args)


def load_from_args(args: argparse.Namespace) -> Enhancer:
    """:func:`load` from ``pse-enhance``'s parsed options (the command's own path)."""
    from espnet2_pse.bin.enhance import build_enhancer, use_packed_speaker_encoders
    from espnet2_pse.inference.conditioned import refinement_from_args
    from espnet2_pse.inference.model_loading import ModelNotFoundError, build_separate_speech, resolve_model

    refinement_from_args(args, require_student=False)  # option mistakes before the model loads
    unpacked = tempfile.TemporaryDirectory(prefix="pse_model_")
    try:
        files = resolve_model(args.model, Path(unpacked.name), args.cache_dir)
        separate_speech = build_separate_speech(files, args.device)
    except ModelNotFoundError:
        unpacked.cleanup()
        raise
    except Exception as err:  # bad YAML, unknown class names, mismatched weights, ...
        unpacked.cleanup()
        raise ModelLoadError(f"cannot load model {args.model}: {type(err).__name__}: {err}") from None
    use_packed_speaker_encoders(args, files.extras)
    try:
        engine = build_enhancer(args, separate_speech)
    except Exception:
        unpacked.cleanup()
        raise
    return Enhancer(str(args.model), engine, args.model_fs, unpacked)


def personalize(
    noisy_dir: Optional[PathLike],
    out: PathLike,
    clean_dir: Optional[PathLike] = None,
    progress: Optional[Callable[[dict], None]] = None,
    quiet: bool = False,
    **options,
) -> Enhancer:
    """Personalize a model to one voice (what ``pse-personalize`` runs) and load it.

    Args:
        noisy_dir: folder of the person's own noisy recordings (zero-shot); None to train on
            ``clean_dir`` alone, straight from the base model.
        out: packed model to write (.zip).
        clean_dir: optional folder of clean speech of the person (few-shot).
        progress: called with a dict after each step and each training epoch:
            ``{"step": "data"|"zsl"|"fsl"|"pack"|"done", "epoch": k, "max_epoch": n,
            "elapsed_s": s, "eta_s": s, "fraction": 0..1}`` (epoch keys during training;
            "fraction" estimates the share of the whole run done). An exception it raises
            stops the run; rerunning with the same ``work_dir`` resumes it.
        quiet: no progress lines on stderr (the log file in the work dir is written anyway).
        **options: the command's options without the dashes, e.g. ``work_dir="me_work"``,
            ``max_epoch=150``, ``causal=True``, ``snapshot_epochs=[20, 60]``; same defaults.
    Returns:
        the written model, loaded (:func:`load`).
    Raises:
        ValueError, OSError, RuntimeError: refused options, unreadable folders, failed
            training; the message says which.
    """
    from espnet2_pse.bin import personalize as command
    from espnet2_pse.bin.personalize_progress import remove_logging, setup_logging

    argv = ["--out", str(out)] + (["--noisy_dir", str(noisy_dir)] if noisy_dir is not None else [])
    if clean_dir is not None:
        argv += ["--clean_dir", str(clean_dir)]
    argv += options_to_argv(command.get_parser(), options)
    args = command.get_parser().parse_args(argv)
    command.check_args(args)
    handlers = setup_logging(command.work_dir_of(args), terminal=not quiet)
    try:
        written = command.personalize(args, progress=progress)
    finally:
        remove_logging(handlers)
    return load(written)


def options_to_argv(parser: argparse.ArgumentParser, options: dict) -> list:
    """``{"max_epoch": 20, "causal": True}`` -> ``["--max_epoch", "20", "--causal"]``.

    Raises:
        TypeError: an option the command does not have.
    """
    actions = {a.dest: a for a in parser._actions}
    argv = []
    for name, value in options.items():
        action = actions.get(name)
        if action is None or not action.option_strings:
            known = sorted(d for d, a in actions.items() if a.option_strings and d != "help")
            raise TypeError(f"unknown option {name!r}; the options are {known}")
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            argv += [flag] if value else []
        elif value is None:
            continue
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
