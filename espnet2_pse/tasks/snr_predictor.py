"""ESPnet task that trains the DP frame-SNR predictor on clean speech plus a noise bank.

Data: one scp of clean speech, named ``speech`` (the generalist speakers' ``wav.scp``):

    python -m espnet2_pse.bin.snr_predictor_train \\
        --train_data_path_and_name_and_type data/generalist/train/wav.scp,speech,sound \\
        --noise_scp data/noise/premix_train/wav.scp ...

Each utterance is cropped to ``--crop_length`` samples by the preprocessor (random offset in
training, centred in validation). Shorter utterances are kept whole: the collate function
zero-pads them and the loss ignores frames past each length. (ESPnet's chunk iterator would
instead silently drop every utterance not longer than the chunk.)

In the model's forward, each example gets a random crop of a random file of the noise bank,
mixed at an SNR drawn from U(-10, 10) dB, and the predictor regresses the frame SNR (MSE in
dB^2). Validation draws come from a generator reset at every ``eval()``, so every validation
pass sees the same mixtures.
"""

import argparse
import functools
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
import torch
from espnet2.fileio.read_text import read_2columns_text
from espnet2.tasks.abs_task import AbsTask
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.trainer import Trainer
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import int_or_none, str_or_none

from espnet2_pse.data.audio import AudioError
from espnet2_pse.data.mixing import mix_at_snr
from espnet2_pse.ssl.snr_predictor import SNRPredictor, frame_snr_target


class ESPnetSNRPredictorModel(AbsESPnetModel):
    """Mixes clean speech with bank noise on the fly and trains an :class:`SNRPredictor`.

    Only ``predictor.*`` enters the state dict: the noise bank is read from ``noise_scp``
    lazily, on the first forward, so a trained model reloads without it.

    Args:
        predictor: the network to train.
        noise_scp: Kaldi-style "key path" list of noise wavs (mono, ``fs`` Hz).
        fs: sampling rate in Hz the noise files must have.
        snr_range: (low, high) mixing SNR in dB, drawn uniformly per example.
        min_target_db: lower clamp of the frame-SNR targets in dB.
        max_target_db: upper clamp of the frame-SNR targets in dB.
        eval_seed: seed of the validation draws (reset at every ``eval()``).
    """

    def __init__(
        self,
        predictor: SNRPredictor,
        noise_scp: Optional[str],
        fs: int = 16000,
        snr_range: Sequence[float] = (-10.0, 10.0),
        min_target_db: float = -30.0,
        max_target_db: float = 30.0,
        eval_seed: int = 0,
    ):
        super().__init__()
        if len(snr_range) != 2 or snr_range[0] > snr_range[1]:
            raise ValueError(f"model_conf.snr_range must be [low, high] in dB, got {snr_range}")
        self.predictor = predictor
        self.noise_scp = noise_scp
        self.fs = fs
        self.snr_range = (float(snr_range[0]), float(snr_range[1]))
        self.min_target_db = min_target_db
        self.max_target_db = max_target_db
        self.eval_seed = eval_seed
        self._noise_paths: Optional[List[str]] = None
        self._noise_frames: Dict[str, int] = {}
        self._eval_rng = np.random.RandomState(eval_seed)

    def train(self, mode: bool = True):
        if not mode:
            self._eval_rng = np.random.RandomState(self.eval_seed)
        return super().train(mode)

    def _rng(self):
        # Training draws follow numpy's global state, which ESPnet seeds (--seed).
        return np.random if self.training else self._eval_rng

    def _load_noise_bank(self) -> List[str]:
        if self._noise_paths is None:
            if not self.noise_scp:
                raise ValueError(
                    "the SNR predictor needs a noise bank to make training mixtures: "
                    "pass --noise_scp <wav.scp>"
                )
            if not Path(self.noise_scp).is_file():
                raise FileNotFoundError(f"--noise_scp: no such file: {self.noise_scp}")
            try:
                self._noise_paths = list(read_2columns_text(self.noise_scp).values())
            except RuntimeError as e:
                raise ValueError(f"--noise_scp {self.noise_scp}: {e}") from e
            if not self._noise_paths:
                raise ValueError(f"--noise_scp {self.noise_scp} lists no files")
            logging.info(f"SNR predictor: {len(self._noise_paths)} noise files in {self.noise_scp}")
        return self._noise_paths

    def _noise_length(self, path: str) -> int:
        if path not in self._noise_frames:
            # The data stage writes 16 kHz mono PCM_16: anything else is a broken bank.
            try:
                info = sf.info(path)
            except Exception as e:  # soundfile raises several types for bad files
                raise AudioError(path, f"cannot be read (listed in {self.noise_scp}): {e}") from e
            if info.samplerate != self.fs:
                raise AudioError(path, f"has {info.samplerate} Hz, the model expects {self.fs} Hz")
            if info.channels != 1:
                raise AudioError(path, f"has {info.channels} channels; mono expected")
            if info.frames == 0:
                raise AudioError(path, "is empty (0 samples)")
            self._noise_frames[path] = info.frames
        return self._noise_frames[path]

    def draw_noise(self, length: int) -> np.ndarray:
        """A random crop of ``length`` samples of a random bank file, tiled if it is shorter."""
        rng = self._rng()
        paths = self._load_noise_bank()
        path = paths[rng.randint(len(paths))]
        frames = self._noise_length(path)
        start = rng.randint(frames - length + 1) if frames > length else 0
        noise, _ = sf.read(path, start=start, frames=length, dtype="float32", always_2d=False)
        if not np.all(np.isfinite(noise)):
            raise AudioError(path, "contains NaN or Inf samples")
        if len(noise) < length:
            noise = np.tile(noise, -(-length // len(noise)))[:length]
        return noise

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """One regression step.

        Args:
            speech: (B, T) clean speech, zero-padded past each length.
            speech_lengths: (B,) valid samples.
        Returns:
            loss (MSE of frame SNR in dB^2), stats {loss, mae_db}, batch size (weight).
        """
        batch = speech.size(0)
        noise = torch.zeros_like(speech)
        for b, length in enumerate(speech_lengths.tolist()):
            noise[b, :length] = torch.from_numpy(self.draw_noise(int(length))).to(speech)
        snr = self._rng().uniform(*self.snr_range, size=batch)
        noisy = mix_at_snr(speech, noise, torch.from_numpy(snr).to(speech))

        target = frame_snr_target(
            speech,
            noisy,
            self.predictor.frame_length,
            self.predictor.hop_length,
            min_db=self.min_target_db,
            max_db=self.max_target_db,
        )
        predicted = self.predictor(noisy, speech_lengths)
        # Frame t is centred on sample t * hop: keep the frames centred inside the signal.
        last_frame = speech_lengths.unsqueeze(1) // self.predictor.hop_length
        frames = torch.arange(target.size(1), device=speech.device).unsqueeze(0)
        valid = (frames <= last_frame).to(speech.dtype)
        count = valid.sum().clamp_min(1.0)
        error = predicted - target
        loss = (error.pow(2) * valid).sum() / count
        stats = dict(loss=loss.detach(), mae_db=((error.abs() * valid).sum() / count).detach())
        return force_gatherable((loss, stats, batch), loss.device)

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs):
        return {}


def crop_speech(
    uid: str, data: Dict[str, np.ndarray], crop_length: Optional[int], train: bool
) -> Dict[str, np.ndarray]:
    """Preprocessor: check ``data["speech"]`` and cut it to at most ``crop_length`` samples.

    Random offset in training, centred otherwise; shorter utterances are returned whole.
    """
    speech = data.get("speech")
    if speech is None:
        raise KeyError(f"utterance '{uid}': no 'speech' entry (data keys: {sorted(data)})")
    if speech.ndim != 1:
        raise ValueError(f"utterance '{uid}': expected mono speech, got shape {speech.shape}")
    if speech.size == 0:
        raise ValueError(f"utterance '{uid}': empty audio")
    if not np.all(np.isfinite(speech)):
        raise ValueError(f"utterance '{uid}': audio contains NaN or Inf samples")
    if crop_length and len(speech) > crop_length:
        excess = len(speech) - crop_length
        start = np.random.randint(excess + 1) if train else excess // 2
        speech = speech[start : start + crop_length]
    return {**data, "speech": speech.astype(np.float32, copy=False)}


class SNRPredictorTask(AbsTask):
    """Trains the frame-SNR predictor of Data Purification (``--noise_scp`` required)."""

    num_optimizers: int = 1
    class_choices_list = []
    trainer = Trainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument(
            "--noise_scp",
            type=str_or_none,
            default=None,
            help="Kaldi-style wav.scp of the noise bank mixed into the clean speech",
        )
        group.add_argument(
            "--crop_length",
            type=int_or_none,
            default=16000,
            help="Crop each utterance to this many samples (none: whole utterances)",
        )
        group.add_argument(
            "--predictor_conf",
            action=NestedDictAction,
            default=get_default_kwargs(SNRPredictor),
            help="Keyword arguments of SNRPredictor (hidden_size, num_layers, ...)",
        )
        group.add_argument(
            "--model_conf",
            action=NestedDictAction,
            default=get_default_kwargs(ESPnetSNRPredictorModel),
            help="Keyword arguments of ESPnetSNRPredictorModel (fs, snr_range, ...)",
        )
        return parser

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-32768)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        return functools.partial(crop_speech, crop_length=args.crop_length, train=train)

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech",)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ()

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetSNRPredictorModel:
        predictor = SNRPredictor(**args.predictor_conf)
        return ESPnetSNRPredictorModel(
            predictor, noise_scp=getattr(args, "noise_scp", None), **args.model_conf
        )


def load_snr_predictor(
    config_yaml: Union[str, Path],
    model_file: Union[str, Path],
    device: Union[str, torch.device] = "cpu",
) -> SNRPredictor:
    """Frozen predictor from a training run of :class:`SNRPredictorTask`.

    Unlike ESPnet's ``build_model_from_file`` (``strict=False``), every weight must load.

    Args:
        config_yaml: the run's config.yaml.
        model_file: a saved state dict (e.g. valid.loss.best.pth).
        device: torch device (or its name), e.g. the device of the batch.
    Returns:
        The SNRPredictor in eval mode with requires_grad False on every parameter.
    """
    for path in (config_yaml, model_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"SNR predictor: no such file: {path}")
    device = str(device)  # ESPnet's loader is type-checked for str
    model, _ = SNRPredictorTask.build_model_from_file(config_yaml, None, device)
    state = torch.load(model_file, map_location=device, weights_only=False)
    if "module" in state:
        state = state["module"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RuntimeError(
            f"SNR predictor weights in {model_file} do not match {config_yaml}: {e}"
        ) from e
    predictor = model.predictor.to(device).eval()
    predictor.requires_grad_(False)
    return predictor
