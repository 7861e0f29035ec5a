"""The debian_real corpus: inventory rules, a tree that mimics the packages, and the real packages."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2_pse.bin.prepare_data import main as prepare_main
from espnet2_pse.data import debian_real, debian_sources
from espnet2_pse.data.debian_sources import (
    NOISE_GROUPS,
    VOICE_FAMILIES,
    NoiseGroup,
    check_inventory,
    is_reserved,
    matching_files,
    pattern_regex,
)
from espnet2_pse.data.kaldi_dir import read_data_dir, read_table
from test.data.conftest import write_audio

RESERVED_DECOYS = ("asterisk-core-sounds-it-wav", "colobot-common-sounds", "openttd-opensfx",
                   "sound-theme-freedesktop")
SMALL = ["--corpus", "debian_real", "--split_scale", "0.05", "--test_mixtures", "3", "--val_mixtures", "2",
         "--nj", "1"]


def test_inventory_reads_no_reserved_package_and_keeps_bank_families_apart():
    check_inventory()
    names = debian_sources.packages()
    assert not [n for n in names if is_reserved(n)]
    for decoy in RESERVED_DECOYS:
        assert is_reserved(decoy), decoy
    assert not is_reserved("asterisk-prompt-it-menardi-wav")
    families = {}
    for group in NOISE_GROUPS:
        assert families.setdefault(group.package, group.family) == group.family
    roles = {}
    for fam in VOICE_FAMILIES:
        assert fam.role in ("target", "validation", "generalist")
        roles.setdefault(fam.package, set()).add(fam.role)
    assert all(len(r) == 1 for r in roles.values()), roles


def test_check_inventory_refuses_reserved_and_shared_packages():
    bad = NOISE_GROUPS + (NoiseGroup("x", "sound-theme-freedesktop", "usr/share/sounds/*.oga", "test"),)
    with pytest.raises(ValueError, match="sound-theme-freedesktop is reserved"):
        check_inventory(noise=bad)
    shared = NOISE_GROUPS + (NoiseGroup("x", "wesnoth-1.16-data", "usr/share/x/*.ogg", "inject"),)
    with pytest.raises(ValueError, match="wesnoth-1.16-data feeds both the test and the inject banks"):
        check_inventory(noise=shared)


def test_fetch_and_package_root_refuse_reserved(tmp_path):
    with pytest.raises(ValueError, match="asterisk-core-sounds-fr-gsm is reserved"):
        debian_sources.fetch(tmp_path, ["qabcs-data", "asterisk-core-sounds-fr-gsm"])
    with pytest.raises(ValueError, match="openttd-opensfx is reserved"):
        debian_sources.package_root(tmp_path, "openttd-opensfx")
    assert not list(tmp_path.iterdir())


def test_pattern_regex():
    rx = pattern_regex("usr/share/games/fillets-ng/sound/*/cs/*-<voice>-*.ogg")
    assert rx.match("usr/share/games/fillets-ng/sound/city/cs/vit-m-hlava.ogg").group("voice") == "m"
    assert not rx.match("usr/share/games/fillets-ng/sound/city/cs/deep/vit-m-hlava.ogg")
    deep = pattern_regex("a/<voice>/**/*.ogg")
    assert deep.match("a/fr/alpha/x.ogg").group("voice") == "fr"
    assert deep.match("a/fr/x.ogg").group("voice") == "fr"
    assert not deep.match("a/fr/x.wav")


def test_matching_files_needs_an_unpacked_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="qabcs-data is not unpacked.*fetch_debian"):
        matching_files(tmp_path, "qabcs-data", "usr/*.ogg")


# One representative file path per family, with the layout of the real package.
_VOICE_PATHS = {
    "festru": "usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav/ru_{i:04d}.wav",
    "asterisk_it": "usr/share/asterisk/sounds/it_IT_f_Menardi/digits/{i}.wav",
    "fillets_cs": "usr/share/games/fillets-ng/sound/city/cs/vit-{v}-line{i}.ogg",
    "fillets_nl": "usr/share/games/fillets-ng/sound/city/nl/vit-{v}-line{i}.ogg",
    "qabcs": "usr/share/qabcs/abcs/{v}/sounds/words/w{i}.ogg",
    "tuxstamps": "usr/share/tuxpaint/stamps/animals/s{i}_desc_{v}.ogg",
    "klettres": "usr/share/klettres/{v}/alpha/l{i}.ogg",
    "ktuberling": "usr/share/ktuberling/sounds/{v}/w{i}.ogg",
    "hedgewars": "usr/share/games/hedgewars/Data/Sounds/voices/{v}/Ow{i}.ogg",
    "kajongg_en": "usr/share/kajongg/voices/{v}/b{i}.ogg",
    "kajongg_de": "usr/share/kajongg/voices/de/{v}/b{i}.ogg",
}
_VOICES = {"fillets_cs": ("m", "v"), "fillets_nl": ("m", "v"), "qabcs": ("fr",), "tuxstamps": ("ca", "es"),
           "klettres": ("de",), "ktuberling": ("it",), "hedgewars": ("Pirate",), "kajongg_en": ("male1",),
           "kajongg_de": ("female1",)}
_NOISE_PATHS = {
    "qabcs": "usr/share/qabcs/abcs/all/noises/n{i}.ogg",
    "lincity": "usr/share/games/lincity-ng/sounds/Farm{i}.wav",
    "minetest": "usr/share/games/minetest/games/minetest_game/mods/fire/sounds/f{i}.ogg",
    "hedgewars": "usr/share/games/hedgewars/Data/Sounds/explosion{i}.ogg",
    "scorched3d": "usr/share/games/scorched3d/data/globalmods/none/data/wav/misc/m{i}.wav",
    "netpanzer": "usr/share/games/netpanzer/sound/boom{i}.wav",
    "btanks": "usr/share/games/btanks/data/sounds/cannon{i}.ogg",
    "frozenbubble": "usr/share/games/frozen-bubble/snd/stick{i}.ogg",
    "etw": "usr/share/games/etw/snd/kick{i}.wav",
    "searchandrescue": "usr/share/games/searchandrescue/sounds/engine/rotor{i}.wav",
    "crrcsim": "usr/share/games/crrcsim/sounds/glider{i}.wav",
    "caveexpress": "usr/share/games/caveexpress/sounds/rock{i}.ogg",
    "lugaru": "usr/share/games/lugaru/Sounds/footstep{i}.ogg",
    "tuxpaint": "usr/share/tuxpaint/sounds/brush{i}.wav",
    "heroes": "usr/share/games/heroes/sfx/bonus{i}.wav",
    "lbreakout2": "usr/share/games/lbreakout2/sounds/reflect{i}.wav",
    "mirrormagic": "usr/share/games/mirrormagic/sounds/snd_classic/laser{i}.wav",
    "ardentryst": "usr/share/games/ardentryst/Sounds/hit{i}.ogg",
    "wordwarvi": "usr/share/wordwarvi/sounds/bomb{i}.ogg",
    "wesnoth": "usr/share/games/wesnoth/1.16/data/core/sounds/sword-{i}.ogg",
    "planetblupi": "usr/share/planetblupi/sound/en/sound09{i}.wav",
}
# Files that exist in the real packages but must not be taken.
_DECOYS = (
    ("fillets-ng-data-cs", "usr/share/games/fillets-ng/sound/city/cs/vit-x-door.ogg"),  # an effect
    ("wesnoth-1.16-data", "usr/share/games/wesnoth/1.16/data/core/sounds/human-die-1.ogg"),  # a scream
    ("planetblupi-common", "usr/share/planetblupi/sound/en/sound002.wav"),  # Blupi's voice
    ("asterisk-prompt-it-menardi-wav", "usr/share/asterisk/sounds/it_IT_f_Menardi/silence/1.wav"),
    ("hedgewars-data", "usr/share/games/hedgewars/Data/Sounds/hell_ow.ogg"),
)


def _write(path: Path, seconds: float, seed: int) -> None:
    fmt = "OGG" if path.suffix == ".ogg" else None
    write_audio(path, seconds, sr=22050, seed=seed, fmt=fmt, subtype="VORBIS" if fmt else "PCM_16")


def make_debian_tree(root: Path) -> Path:
    """Every inventory package with a few clips at its real paths, plus decoys and reserved packages."""
    seed = 0
    for fam in VOICE_FAMILIES:
        voices = fam.voices or _VOICES[fam.prefix]
        for v in voices:
            clips = 16 if fam.role == "target" else 4
            for i in range(clips):
                seed += 1
                _write(root / fam.package / _VOICE_PATHS[fam.prefix].format(v=v, i=i), 1.6, seed)
    for group in NOISE_GROUPS:
        for i in range(4):
            seed += 1
            _write(root / group.package / _NOISE_PATHS[group.name].format(i=i), 2.5, seed)
    for package, rel in _DECOYS:
        _write(root / package / rel, 3.0, 999)
    for decoy in RESERVED_DECOYS:
        _write(root / decoy / "usr/share/sounds/x.wav", 3.0, 998)
        (root / decoy / ".version").write_text("1\n")
    for name in debian_sources.packages():
        (root / name / ".version").write_text("1.0-1\n")
    return root


@pytest.fixture(scope="module")
def mimic_build(tmp_path_factory):
    """The corpus built from a mimic tree, recording every file the builder decodes or lists."""
    tmp = tmp_path_factory.mktemp("debian")
    tree = make_debian_tree(tmp / "debian")
    loaded, walked = [], []
    real_load, real_walk = debian_real.load_audio, os.walk
    mp = pytest.MonkeyPatch()
    mp.setattr(debian_real, "load_audio", lambda path, *a, **k: loaded.append(str(path)) or real_load(path, *a, **k))
    mp.setattr(debian_sources.os, "walk", lambda top, *a, **k: walked.append(str(top)) or real_walk(top, *a, **k))
    try:
        prepare_main(["--out", str(tmp / "data"), "--debian_dir", str(tree)] + SMALL)
    finally:
        mp.undo()
    return tmp / "data", tree, loaded, walked


def test_mimic_build_roles_banks_and_what_is_read(mimic_build):
    data, tree, loaded, walked = mimic_build
    roles = yaml.safe_load((data / "roles.yaml").read_text())
    assert roles["target"] == ["asterisk_it_menardi", "festru_ru", "fillets_cs_m", "fillets_cs_v",
                               "fillets_nl_m", "fillets_nl_v"]
    assert roles["validation"] == ["qabcs_fr"]
    assert "tuxstamps_ca" in roles["generalist"] and "kajongg_de_female1" in roles["generalist"]
    # Only inventory packages are listed and decoded; nothing of a reserved package, no decoy.
    allowed = {str(tree / n) for n in debian_sources.packages()}
    assert walked and set(walked) <= allowed
    assert loaded and all(any(p.startswith(a + "/") for a in allowed) for p in loaded)
    assert not [p for p in loaded if any(f"/{d}/" in p for d in RESERVED_DECOYS)]
    decoys = {str(tree / pkg / rel) for pkg, rel in _DECOYS}
    assert not decoys & set(loaded)
    # Banks are kept apart by package: each bank's families come from its own groups.
    by_family = {"premix": set(), "inject": set(), "test": set()}
    for g in NOISE_GROUPS:
        by_family[g.family].add(g.name)
    for bank, family in (("premix_train", "premix"), ("premix_val", "premix"), ("premix_test", "premix"),
                         ("inject_train", "inject"), ("inject_val", "inject"), ("test", "test")):
        fams = set(read_table(data / "noise" / bank / "utt2family").values())
        assert fams and fams <= by_family[family], (bank, fams)
    # Clips of one bank are not in another: scene keys are unique per bank and scenes are
    # built from disjoint clip sets, so no file repeats across the banks of a family.
    done = yaml.safe_load((data / ".done").read_text())
    assert done["stats"]["provenance"]["qabcs-data"] == "1.0-1"
    assert done["config"]["corpus"] == "debian_real"


def test_mimic_build_utterances_are_joined_clips_of_one_voice(mimic_build):
    data = mimic_build[0]
    d = read_data_dir(data / "speakers" / "fillets_cs_m" / "pretrain")
    assert d.keys and all(k.startswith("fillets_cs_m-") for k in d.keys)
    for key in d.keys:
        x, fs = sf.read(d.wav[key])
        assert fs == 16000 and 4.0 <= len(x) / fs <= 12.0
    test = read_data_dir(data / "speakers" / "fillets_cs_m" / "test")
    assert len(test.keys) == 3 and set(test.tables["utt2spk"].values()) == {"fillets_cs_m"}


def test_rebuild_is_identical(mimic_build, tmp_path):
    data, tree = mimic_build[0], mimic_build[1]
    prepare_main(["--out", str(tmp_path / "again"), "--debian_dir", str(tree)] + SMALL)
    for rel in ("speakers/festru_ru/test", "noise/test", "generalist/train"):
        a, b = read_data_dir(data / rel), read_data_dir(tmp_path / "again" / rel)
        assert a.keys == b.keys
        for k in a.keys[:3]:
            assert np.array_equal(sf.read(a.wav[k])[0], sf.read(b.wav[k])[0])


def test_missing_package_names_the_fetch_command(tmp_path):
    tree = make_debian_tree(tmp_path / "debian")
    (tree / "kajongg" / ".version").unlink()
    with pytest.raises(FileNotFoundError, match="kajongg is not unpacked"):
        prepare_main(["--out", str(tmp_path / "data"), "--debian_dir", str(tree)] + SMALL)
    assert not (tmp_path / "data").exists()


def test_real_packages_small_build(tmp_path):
    """The unpacked Debian packages (make -C tools fetches them): a small build reads real audio."""
    debian_dir = debian_sources.default_debian_dir()
    missing = [n for n in debian_sources.packages() if not (debian_dir / n / ".version").is_file()]
    assert not missing, f"run 'make -C tools' (or python -m espnet2_pse.bin.fetch_debian) first: {missing}"
    loaded = []
    real_load = debian_real.load_audio
    mp = pytest.MonkeyPatch()
    mp.setattr(debian_real, "load_audio", lambda path, *a, **k: loaded.append(str(path)) or real_load(path, *a, **k))
    try:
        prepare_main(["--out", str(tmp_path / "data"), "--corpus", "debian_real", "--nj", "1",
                      "--debian_targets", "festru_ru", "--debian_target_minutes", "1.5",
                      "--debian_other_minutes", "0.05", "--debian_noise_minutes", "0.2",
                      "--split_scale", "0.25", "--test_mixtures", "4", "--val_mixtures", "2"])
    finally:
        mp.undo()
    allowed = [str(debian_dir / n) + "/" for n in debian_sources.packages()]
    assert loaded and all(any(p.startswith(a) for a in allowed) for p in loaded)
    assert not [p for p in loaded if is_reserved(Path(p).relative_to(debian_dir).parts[0])]
    roles = yaml.safe_load((tmp_path / "data" / "roles.yaml").read_text())
    assert roles["target"] == ["festru_ru"] and len(roles["generalist"]) > 20
    test = read_data_dir(tmp_path / "data" / "speakers" / "festru_ru" / "test")
    x, fs = sf.read(test.wav[test.keys[0]])
    assert fs == 16000 and len(x) == 4 * fs and np.abs(x).max() > 0.01
