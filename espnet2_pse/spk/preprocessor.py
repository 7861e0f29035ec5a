"""Per-utterance data preparation for speaker distillation (runs in the data loader)."""

import zlib
from typing import Dict, List, Optional, Union

import numpy as np

from espnet2.train.preprocessor import AbsPreprocessor
from espnet2_pse.data.audio import load_audio
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

    Output keys: ``speech`` (crop_s seconds, float32), ``noise`` (same length, when
    ``noise_scp`` is set) and ``spk_labels`` ((1,) int64, when the data has spk_labels text):
    the speaker's class id 0..N-1 when ``spk2utt`` is given (classification losses need it),
    else a hash id that is only good for equality.
    Training crops are random; validation crops and noises are drawn from a generator seeded
    by the utterance key, so every epoch validates on the same views.

    Args:
        train: training (random) or validation (fixed) behaviour.
        crop_s: teacher view length in seconds; shorter utterances are repeated.
        sample_rate: Hz; noise files at other rates are resampled.
        noise_scp: ``key path`` list of mono noise wavs for the student views.
        seed: offset of the per-utterance validation seeds.
        spk2utt: Kaldi spk2utt listing every labelled speaker (sorted names -> 0..N-1).
    """

    def __init__(
        self,
        train: bool,
        crop_s: float = 4.0,
        sample_rate: int = 16000,
        noise_scp: Optional[str] = None,
        seed: int = 0,
        spk2utt: Optional[str] = None,
    ):
        super().__init__(train)
        if crop_s <= 0:
            raise ValueError(f"crop_s must be > 0 seconds, got {crop_s}")
        self.crop = int(round(crop_s * sample_rate))
        self.sample_rate = sample_rate
        self.seed = seed
        self.noise_scp = noise_scp
        self.noises: List[str] = sorted(read_table(noise_scp).values()) if noise_scp else []
        if noise_scp and not self.noises:
            raise ValueError(f"noise_scp {noise_scp} lists no files")
        self.spk2utt = spk2utt
        self.spk_index = speaker_index(spk2utt) if spk2utt else None
        self._rng = np.random.default_rng()

    def _generator(self, uid: str) -> np.random.Generator:
        if self.train:
            return self._rng
        return derive_rng(self.seed, "spk_distill_valid", uid)

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
        out = {"speech": _crop(speech.astype(np.float32), self.crop, rng)}
        if self.noises:
            out["noise"] = _crop(self._read_noise(rng), self.crop, rng)
        if "spk_labels" in data:
            out["spk_labels"] = np.asarray([self._label(uid, str(data["spk_labels"]))], np.int64)
        return out

    def _label(self, uid: str, speaker: str) -> int:
        if self.spk_index is None:
            return speaker_id(speaker)
        if speaker not in self.spk_index:
            raise KeyError(
                f"utterance {uid}: speaker '{speaker}' is not listed in --spk2utt "
                f"{self.spk2utt} (class ids are only defined for its speakers)"
            )
        return self.spk_index[speaker]
