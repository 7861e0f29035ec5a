"""From corpus sources (speakers' utterances, noise banks, roles) to the data contract.

Layout written under the data root (see the team's data contract):
  roles.yaml                          {target: [...], validation: [...], generalist: [...]}
  noise/<bank>/                       wav.scp, utt2family (banks: premix_train, premix_val,
                                      premix_test, inject_train, inject_val, test)
  generalist/train/                   clean utterances of the generalist speakers
  generalist/valid/                   fixed mixtures of the validation speakers (inject_val)
  speakers/<spk>/meta.yaml            {speaker, source, premixed, ...}
  speakers/<spk>/{pretrain,fsl_train} clean speech (wav.scp == spk1.scp)
  speakers/<spk>/preval/              pseudo-mixtures: s + premix_val, then + inject_val
  speakers/<spk>/fsl_val/             mixtures of the 'val' split with inject_val
  speakers/<spk>/test/                test mixtures with the test bank
  speakers/<spk>/test_interferer/     (interferer_test) the test references + a validation-role
                                      voice at U(0, 10) dB TIR + the test bank at U(0, 10) dB
Mixture audio goes under audio/mix/.
"""

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

from espnet2_pse.data.fixed_mixtures import Item, make_fixed_mixtures, make_interferer_mixtures, speaker_items
from espnet2_pse.data.kaldi_dir import read_data_dir, write_data_dir
from espnet2_pse.data.runtime import derive_rng
from espnet2_pse.data.splits import PAPER_SPLIT_SECONDS, split_by_duration

ROLES = ("target", "validation", "generalist")
NOISE_BANKS = ("premix_train", "premix_val", "premix_test", "inject_train", "inject_val", "test")


@dataclass
class Sources:
    """What a corpus preparation hands to :func:`write_layout`.

    ``speakers[spk]`` are Items labelled with the speaker id; ``noise[bank]`` Items labelled
    with their family; ``speaker_info[spk]`` extra fields for meta.yaml (gender, voice, ...);
    ``provenance`` what the build came from (package versions), recorded in ``.done``.
    """

    corpus: str
    speakers: Dict[str, List[Item]]
    roles: Dict[str, List[str]]
    noise: Dict[str, List[Item]]
    speaker_info: Dict[str, dict] = field(default_factory=dict)
    provenance: Dict[str, str] = field(default_factory=dict)


@dataclass
class LayoutConfig:
    """Split and fixed-set settings (seconds, counts, dB)."""

    seed: int = 0
    split_scale: float = 1.0
    test_mixtures: int = 100
    val_mixtures: int = 64
    mixture_seconds: float = 4.0
    premix_snr: Tuple[float, float] = (0.0, 15.0)
    inject_snr: Tuple[float, float] = (-5.0, 5.0)
    test_snr: Tuple[float, float] = (-5.0, 5.0)
    # A second test set per target speaker with an interfering talker (test_interferer/).
    interferer_test: bool = False
    interferer_tir: Tuple[float, float] = (0.0, 10.0)
    interferer_snr: Tuple[float, float] = (0.0, 10.0)

    def validate(self) -> None:
        if self.split_scale <= 0 or self.mixture_seconds <= 0:
            raise ValueError("split_scale and mixture_seconds must be positive")
        if self.test_mixtures < 1 or self.val_mixtures < 1:
            raise ValueError("test_mixtures and val_mixtures must be at least 1")

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if not self.interferer_test:
            # Roots built before the interferer set existed keep matching their .done record.
            for k in ("interferer_test", "interferer_tir", "interferer_snr"):
                d.pop(k)
        return d


def write_yaml(path: Path, data: dict) -> None:
    """YAML file via a temporary name and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def check_sources(src: Sources) -> None:
    """Roles disjoint and known, every role speaker has audio, every noise bank non-empty."""
    seen: Dict[str, str] = {}
    for role in ROLES:
        for spk in src.roles.get(role, []):
            if spk in seen:
                raise ValueError(f"speaker {spk} is both {seen[spk]} and {role}")
            seen[spk] = role
            if not src.speakers.get(spk):
                raise ValueError(f"{role} speaker {spk} has no usable utterances")
        if not src.roles.get(role):
            raise ValueError(f"no {role} speakers")
    for bank in NOISE_BANKS:
        if not src.noise.get(bank):
            raise ValueError(f"noise bank {bank} is empty")


def write_noise_dirs(out: Path, noise: Dict[str, List[Item]]) -> None:
    for bank in NOISE_BANKS:
        items = noise[bank]
        write_data_dir(
            out / "noise" / bank,
            wav={i.key: i.path for i in items},
            utt2spk={i.key: i.key for i in items},
            extra={"utt2family": {i.key: i.label for i in items}},
        )


def write_target_speaker(out: Path, spk: str, utts: List[Item], src: Sources, cfg: LayoutConfig) -> dict:
    """Split one target speaker and write its five data dirs and meta.yaml; returns the meta."""
    splits = split_by_duration(
        {u.key: u.seconds for u in utts}, PAPER_SPLIT_SECONDS, cfg.split_scale, who=f"speaker {spk}"
    )
    base = out / "speakers" / spk
    audio = out / "audio" / "mix" / spk

    def clean_dir(name: str, keys: List[str]) -> None:
        items = speaker_items(utts, keys)
        write_data_dir(base / name, {i.key: i.path for i in items}, {i.key: spk for i in items}, spk1="same")

    def mixture_dir(name: str, split: str, noise_bank: str, count: int, snr, premix_bank=None) -> None:
        rng = derive_rng(cfg.seed, "mixtures", spk, name)
        wav, spk1, utt2spk, extra = make_fixed_mixtures(
            audio / name,
            name,
            speaker_items(utts, splits[split]),
            src.noise[noise_bank],
            count,
            rng,
            snr,
            cfg.mixture_seconds,
            premix=src.noise[premix_bank] if premix_bank else None,
            premix_snr_range=cfg.premix_snr,
        )
        write_data_dir(base / name, wav, utt2spk, spk1=spk1, extra=extra)

    clean_dir("pretrain", splits["pretrain"])
    clean_dir("fsl_train", splits["train"])
    mixture_dir("preval", "preval", "inject_val", cfg.val_mixtures, cfg.inject_snr, premix_bank="premix_val")
    mixture_dir("fsl_val", "val", "inject_val", cfg.val_mixtures, cfg.inject_snr)
    mixture_dir("test", "test", "test", cfg.test_mixtures, cfg.test_snr)
    if cfg.interferer_test:
        write_interferer_test(out, spk, src, cfg)
    by_key = {u.key: u.seconds for u in utts}
    meta = {
        "speaker": spk,
        "source": "corpus",
        "premixed": False,
        "corpus": src.corpus,
        "split_seconds": {name: round(sum(by_key[k] for k in keys), 3) for name, keys in splits.items()},
        **src.speaker_info.get(spk, {}),
    }
    write_yaml(base / "meta.yaml", meta)
    return meta


def interferer_voices(src: Sources) -> List[Item]:
    """Utterances of the interfering talkers: the validation-role voices, which no model trains
    on (they only select checkpoints) and which share no family with a target."""
    return [u for spk in src.roles["validation"] for u in src.speakers[spk]]


def write_interferer_test(out: Path, spk: str, src: Sources, cfg: LayoutConfig) -> None:
    """speakers/<spk>/test_interferer: the clean references of speakers/<spk>/test, each with
    one interfering talker and test-bank noise."""
    test = read_data_dir(out / "speakers" / spk / "test")
    references = [Item(key, test.spk1[key], 0.0, spk) for key in test.keys]
    wav, spk1, utt2spk, extra = make_interferer_mixtures(
        out / "audio" / "mix" / spk / "test_interferer",
        "testint",
        references,
        interferer_voices(src),
        src.noise["test"],
        derive_rng(cfg.seed, "mixtures", spk, "test_interferer"),
        cfg.interferer_tir,
        cfg.interferer_snr,
    )
    write_data_dir(out / "speakers" / spk / "test_interferer", wav, utt2spk, spk1=spk1, extra=extra)


def write_layout(out: Path, src: Sources, cfg: LayoutConfig) -> None:
    """Write roles, noise banks, generalist dirs and every target speaker's dirs under ``out``."""
    check_sources(src)
    out.mkdir(parents=True, exist_ok=True)
    write_noise_dirs(out, src.noise)

    gen = [u for spk in src.roles["generalist"] for u in src.speakers[spk]]
    write_data_dir(
        out / "generalist" / "train", {u.key: u.path for u in gen}, {u.key: u.label for u in gen}, spk1="same"
    )
    val = [u for spk in src.roles["validation"] for u in src.speakers[spk]]
    wav, spk1, utt2spk, extra = make_fixed_mixtures(
        out / "audio" / "mix" / "generalist_valid",
        "valid",
        val,
        src.noise["inject_val"],
        cfg.val_mixtures,
        derive_rng(cfg.seed, "mixtures", "generalist_valid"),
        cfg.inject_snr,
        cfg.mixture_seconds,
    )
    write_data_dir(out / "generalist" / "valid", wav, utt2spk, spk1=spk1, extra=extra)

    for n, spk in enumerate(src.roles["target"], 1):
        meta = write_target_speaker(out, spk, src.speakers[spk], src, cfg)
        logging.info(
            "target speaker %s (%d/%d): splits %s", spk, n, len(src.roles["target"]), meta["split_seconds"]
        )
    # roles.yaml last: its presence means every dir it points to is written.
    write_yaml(out / "roles.yaml", {r: list(src.roles[r]) for r in ROLES})
