"""The frozen teacher: an ESPnet speaker model (ECAPA-TDNN, RawNet3, ...) used for embeddings only.

Three ways to get one:
- ``train_config`` + ``model_file``: a model trained in-recipe with ``espnet2.bin.spk_train``;
- ``model_tag``: a pretrained model: ``resemblyzer`` (the GE2E encoder whose weights ship in
  the resemblyzer wheel, trained on thousands of real speakers; offline, 256-d embeddings,
  :mod:`espnet2_pse.spk.ge2e`), or an ESPnet model-zoo tag (e.g.
  "espnet/voxcelebs12_rawnet3") through ``Speech2Embedding.from_pretrained``, which needs
  espnet_model_zoo and network access (or its cache);
- ``speaker_model_from_config``: a randomly initialised model from a config dict (benchmarks,
  tests).

The teacher never becomes a sub-module of a trainable model: :class:`FrozenTeacher` is a plain
object, so the teacher stays out of state dicts, optimisers, ``model.to()`` and DDP buckets.
"""

import argparse
import logging
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn.functional as F

PathLike = Union[str, Path]


def speaker_model_from_config(config: Dict) -> torch.nn.Module:
    """Build an ``ESPnetSpeakerModel`` from a SpeakerTask config dict (random weights).

    Keys missing from ``config`` take the SpeakerTask defaults (``--encoder rawnet3`` ...).
    """
    from espnet2.tasks.spk import SpeakerTask

    args = vars(SpeakerTask.get_parser().parse_args([]))
    unknown = sorted(set(config) - set(args))
    if unknown:
        raise ValueError(f"unknown SpeakerTask config keys: {unknown}")
    args.update(config)
    return SpeakerTask.build_model(argparse.Namespace(**args))


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no gradients, in place; returns ``model``."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_teacher(
    train_config: Optional[PathLike] = None,
    model_file: Optional[PathLike] = None,
    model_tag: Optional[str] = None,
    device: str = "cpu",
) -> torch.nn.Module:
    """Load a frozen speaker model from local files (ESPnet) or a pretrained model tag."""
    if model_tag == "resemblyzer":
        from espnet2_pse.spk.ge2e import GE2ETeacher

        return freeze(GE2ETeacher().to(device))
    if model_tag:
        from espnet2.bin.spk_inference import Speech2Embedding

        logging.info(f"Loading the teacher speaker model {model_tag} (download or cache)")
        model = Speech2Embedding.from_pretrained(model_tag=model_tag, device=device).spk_model
        return freeze(model)
    if not model_file:
        raise ValueError(
            "no teacher given: set teacher_model_file (+ teacher_train_config) for a local "
            "ESPnet speaker model, or teacher_model_tag for a pretrained one"
        )
    for name, path in (("teacher_train_config", train_config), ("teacher_model_file", model_file)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{name}: {path} does not exist")
    from espnet2.tasks.spk import SpeakerTask

    mismatch = f"teacher_model_file {model_file} does not match its config {train_config}"
    try:
        model, _ = SpeakerTask.build_model_from_file(train_config, model_file, device)
    except RuntimeError as e:  # shape mismatches
        raise RuntimeError(f"{mismatch}: {e}") from e
    # build_model_from_file loads with strict=False: catch missing tensors here.
    state = torch.load(model_file, map_location="cpu", weights_only=False)
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise RuntimeError(
            f"{mismatch}: missing {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    return freeze(model)


class FrozenTeacher:
    """Holds a frozen speaker model outside the module tree and embeds waveforms with it.

    Args:
        model: a speaker model called as ``model(speech, speech_lengths, extract_embd=True)``
            (ESPnetSpeakerModel), or None when ``loader`` builds it on first use.
        loader: zero-argument callable returning the model; lets a model be rebuilt for
            inference (e.g. from a packed student) without the teacher's files.
    """

    def __init__(
        self,
        model: Optional[torch.nn.Module] = None,
        loader: Optional[Callable[[], torch.nn.Module]] = None,
    ):
        if model is None and loader is None:
            raise ValueError("FrozenTeacher needs a model or a loader")
        self._model = freeze(model) if model is not None else None
        self._loader = loader

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = freeze(self._loader())
        return self._model

    @torch.no_grad()
    def embed(self, speech: torch.Tensor, speech_lengths: Optional[torch.Tensor] = None):
        """(B, T) waveform -> (B, D) L2-normalised teacher embeddings (no gradient).

        The teacher follows the input's device on first use; it is kept in eval mode even when
        the surrounding model is switched to train mode.
        """
        model = self.model
        first = next(model.parameters(), None)
        if first is not None and first.device != speech.device:
            model.to(speech.device)
        model.eval()
        embedding = model(speech, speech_lengths, extract_embd=True)
        return F.normalize(embedding.float(), dim=-1)
