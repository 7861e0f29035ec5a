"""Per-utterance data preparation for speaker distillation (runs in the data loader)."""

import zlib
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet2.train.preprocessor import AbsPreprocessor
from espnet2_pse.data.audio import load_audio, speed_perturb
from espnet2_pse.data.kaldi_dir import read_table
from espnet2_pse.data.runtime import derive_rng


def speaker_id(name: str) -> int:
    """Stable integer id of a speaker name (same in every worker and run; only equality matters)."""
    return zlib.crc32(name.encode("utf-8"))


def speaker_index(spk2utt: str) -> Dict[str, int]:
    """Class ids 0..N-1 of the speakers of a Kaldi spk2utt file, in sorted name order."""
    speakers = sorted(read_table(spk2utt))
    if not speakers:
        raise ValueError(f"spk2utt {spk2utt} lists no speakers")
    return {name: i for i, name in enumerate(speakers)}


def _crop(signal: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Random ``length``-sample crop; shorter signals are repeated (wrap) first."""
    if len(signal) < length:
        signal = np.pad(signal, (0, length - len(signal)), mode="wrap")
    start = int(rng.integers(0, len(signal) - length + 1))
    return signal[start : start + length]


class SpkDistillPreprocessor(AbsPreprocessor):
    """Crop the teacher view, attach an aligned noise crop and integer speaker labels.

    With ``speed_factors`` other than (1.0,), each training utterance is first played at a
    random one of them (Kaldi-style speed perturbation: tempo and pitch change together),
    and each factor of a speaker is a voice of its own (its own label): the teacher embeds
    the perturbed crop, so the student meets len(speed_factors) times as many voices.
    Validation utterances are never perturbed.

    Output keys: ``speech`` (crop_s seconds, float32), ``noise`` (same length, when
    ``noise_scp`` is set) and ``spk_labels`` ((1,) int64, when the data has spk_labels text):
    the speaker's class id 0..N-1 when ``spk2utt`` is given (classification losses need it),
    else a hash id that is only good for equality.
    Training crops are random, reproducible from the run's seed and new in every epoch and
    data-loader worker; validation crops and noises are drawn from a generator seeded by the
    utterance key, so every epoch validates on the same views.

    Args:
        train: training (random) or validation (fixed) behaviour.
        crop_s: teacher view length in seconds; shorter utterances are repeated.
        sample_rate: Hz; noise files at other rates are resampled.
        noise_scp: ``key path`` list of mono noise wavs for the student views.
        seed: offset of the per-utterance validation seeds.
        spk2utt: Kaldi spk2utt listing every labelled speaker (sorted names -> 0..N-1);
            with speed factors, speaker i at factor k gets class id k * N + i.
        speed_factors: speed perturbation factors of the training utterances.
    """

    def __init__(
        self,
        train: bool,
        crop_s: float = 4.0,
        sample_rate: int = 16000,
        noise_scp: Optional[str] = None,
        seed: int = 0,
        spk2utt: Optional[str] = None,
        speed_factors: Sequence[float] = (1.0,),
    ):
        super().__init__(train)
        if crop_s <= 0:
            raise ValueError(f"crop_s must be > 0 seconds, got {crop_s}")
        self.speed_factors = check_speed_factors(speed_factors)
        self.crop = int(round(crop_s * sample_rate))
        self.sample_rate = sample_rate
        self.seed = seed
        self.noise_scp = noise_scp
        self.noises: List[str] = sorted(read_table(noise_scp).values()) if noise_scp else []
        if noise_scp and not self.noises:
            raise ValueError(f"noise_scp {noise_scp} lists no files")
        self.spk2utt = spk2utt
        self.spk_index = speaker_index(spk2utt) if spk2utt else None
        self._rng: Optional[np.random.Generator] = None
        self._rng_seed: Optional[int] = None

    def _generator(self, uid: str) -> np.random.Generator:
        if not self.train:
            return derive_rng(self.seed, "spk_distill_valid", uid)
        # A generator made once in __init__ would be copied unchanged into every DataLoader
        # worker of every epoch: the same draws again and again. PyTorch seeds each worker of
        # each epoch differently (reproducibly, from the run's seed); in the main process the
        # seed stays the same and so does the generator, whose stream runs on.
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:
            self._rng, self._rng_seed = derive_rng(seed, "spk_distill_train"), seed
        return self._rng

    def _read_noise(self, rng: np.random.Generator) -> np.ndarray:
        # load_audio checks, downmixes and resamples; its errors name the file.
        return load_audio(self.noises[int(rng.integers(len(self.noises)))], self.sample_rate)

    def __call__(self, uid: str, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        speech = np.asarray(data["speech"])
        if speech.ndim != 1:
            raise ValueError(f"utterance {uid}: speech must be mono, got shape {speech.shape}")
        if speech.size == 0 or not np.all(np.isfinite(speech)):
            raise ValueError(f"utterance {uid}: speech is empty or contains NaN/inf")
        rng = self._generator(uid)
        speed = 0
        if self.train and len(self.speed_factors) > 1:
            speed = int(rng.integers(len(self.speed_factors)))
            speech = speed_perturb(speech, self.speed_factors[speed], self.sample_rate)
        out = {"speech": _crop(speech.astype(np.float32), self.crop, rng)}
        if self.noises:
            out["noise"] = _crop(self._read_noise(rng), self.crop, rng)
        if "spk_labels" in data:
            label = self._label(uid, str(data["spk_labels"]), speed)
            out["spk_labels"] = np.asarray([label], np.int64)
        return out

    def _label(self, uid: str, speaker: str, speed: int) -> int:
        if self.spk_index is None:
            factor = self.speed_factors[speed]
            return speaker_id(speaker if factor == 1.0 else f"{speaker}@speed{factor:g}")
        if speaker not in self.spk_index:
            raise KeyError(
                f"utterance {uid}: speaker '{speaker}' is not listed in --spk2utt "
                f"{self.spk2utt} (class ids are only defined for its speakers)"
            )
        return speed * len(self.spk_index) + self.spk_index[speaker]


def check_speed_factors(factors: Sequence[float]) -> Tuple[float, ...]:
    """Validated speed factors: positive, distinct, 1.0 among them (the unperturbed voices)."""
    factors = tuple(float(f) for f in factors)
    if not factors or any(f <= 0 for f in factors) or len(set(factors)) != len(factors) \
            or 1.0 not in factors:
        raise ValueError(f"speed_factors must be distinct positive factors including 1.0, got {list(factors)}")
    # 1.0 first: the unperturbed voices keep the class ids 0..N-1.
    return (1.0,) + tuple(f for f in factors if f != 1.0)
