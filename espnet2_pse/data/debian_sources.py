"""Which Debian packages the ``debian_real`` corpus reads, and how they are fetched.

Real recorded voices and sound effects ship in Debian's game and education data packages.
This module is the single list of them: each :class:`VoiceFamily` names a package and a path
pattern whose ``<voice>`` part tells one voice from another; each :class:`NoiseGroup` names a
package, a pattern and the bank family it feeds. Banks are kept apart by package: no package
feeds two of premixture / injection / test.

Packages are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
``<debian_dir>/<package>/`` (no root needed, nothing installed system-wide, no dependencies
pulled). The corpus builder reads only below those folders, and only the packages listed
here; :data:`RESERVED` packages (kept for independent evaluation) are refused everywhere.
"""

import fnmatch
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

# Never read, never fetched: kept for independent evaluation of the project.
RESERVED = (
    "asterisk-core-sounds-*",
    "colobot-common-sounds",
    "openttd-opensfx",
    "sound-theme-freedesktop",
)
ENV_DIR = "ESPNET2_PSE_DEBIAN_DIR"
AUDIO_EXTENSIONS = (".ogg", ".wav", ".flac")


def is_reserved(package: str) -> bool:
    return any(fnmatch.fnmatchcase(package, pattern) for pattern in RESERVED)


@dataclass(frozen=True)
class VoiceFamily:
    """Recorded voices of one package.

    ``pattern`` is a path relative to the package root where ``*`` matches within one path
    component, ``**`` any number of components, and ``<voice>`` (once) the part that names a
    voice; every file matching it belongs to voice ``<prefix>_<voice>``. ``voices`` limits the
    voices taken (None: every voice found); ``role`` is the speaker role of the whole family;
    files matching an ``exclude`` pattern (fnmatch on the relative path) are skipped.
    """

    prefix: str
    package: str
    pattern: str
    role: str
    voices: Optional[Tuple[str, ...]] = None
    description: str = ""
    exclude: Tuple[str, ...] = ()


@dataclass(frozen=True)
class NoiseGroup:
    """Sound effects of one package for one bank family ("premix", "inject" or "test")."""

    name: str
    package: str
    pattern: str
    family: str
    exclude: Tuple[str, ...] = ()


# Targets: one Russian speaker reading 100 min of sentences (the unit database of a Festival
# voice, a clean studio recording), an Italian IVR voice (25 min, 8 kHz telephone band), and
# the two fish of Fish Fillets NG dubbed in Czech and in Dutch (four actors, 37-41 min of
# acted dialogue each, with the studio's hiss and the game's voice processing). Validation:
# the children's-alphabet voices of qabcs. Generalist: every other voice (spoken stamp
# descriptions, letters, words, calls and exclamations).
VOICE_FAMILIES: Tuple[VoiceFamily, ...] = (
    VoiceFamily("festru", "festvox-ru", "usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav/<voice>_*.wav",
                "target", ("ru",), "Russian read sentences, male (Festival msu_ru_nsh unit database)"),
    VoiceFamily("asterisk_it", "asterisk-prompt-it-menardi-wav", "usr/share/asterisk/sounds/it_IT_f_<voice>/**/*.wav",
                "target", ("Menardi",), "Italian IVR prompts, female, 8 kHz", exclude=("*/silence/*",)),
    VoiceFamily("fillets_cs", "fillets-ng-data-cs", "usr/share/games/fillets-ng/sound/*/cs/*-<voice>-*.ogg",
                "target", ("m", "v"), "Fish Fillets NG, Czech dub: small fish (m), big fish (v)"),
    VoiceFamily("fillets_nl", "fillets-ng-data-nl", "usr/share/games/fillets-ng/sound/*/nl/*-<voice>-*.ogg",
                "target", ("m", "v"), "Fish Fillets NG, Dutch dub: small fish (m), big fish (v)"),
    VoiceFamily("qabcs", "qabcs-data", "usr/share/qabcs/abcs/<voice>/sounds/**/*.ogg", "validation",
                description="qabcs alphabet and words, one voice per language"),
    VoiceFamily("tuxstamps", "tuxpaint-stamps-default", "usr/share/tuxpaint/stamps/**/*_desc_<voice>.ogg",
                "generalist", description="Tux Paint stamp descriptions, one voice per language"),
    VoiceFamily("klettres", "klettres-data", "usr/share/klettres/<voice>/**/*.ogg", "generalist",
                description="KLettres letters and syllables, one voice per language"),
    VoiceFamily("ktuberling", "ktuberling-data", "usr/share/ktuberling/sounds/<voice>/*", "generalist",
                description="KTuberling words, one voice per language"),
    VoiceFamily("hedgewars", "hedgewars-data", "usr/share/games/hedgewars/Data/Sounds/voices/<voice>/*.ogg",
                "generalist", description="Hedgewars voice packs (calls and exclamations)"),
    VoiceFamily("kajongg_en", "kajongg", "usr/share/kajongg/voices/<voice>/*.ogg", "generalist",
                description="Kajongg mahjong calls, English voices"),
    VoiceFamily("kajongg_de", "kajongg", "usr/share/kajongg/voices/de/<voice>/*.ogg", "generalist",
                description="Kajongg mahjong calls, German voices"),
)

# Voices and screams are not noise here (the banks hold effects and ambiences): file names of
# vocal effects are excluded.
_VOCAL = ("*-die*", "*-hit*", "*groan*", "*ugg*", "*wail*", "*laugh*", "*scream*", "*zombie*", "*deadman*",
          "*/hell_*", "*/Yoohoo*", "*/Kiss*", "*/hogchant*", "*/countdown*", "*/hurry*")
# planetblupi's per-language sounds are Blupi's voice; the others are effects.
_BLUPI_VOICE = ("*/sound00[2-9].wav", "*/sound010.wav", "*/sound01[4789].wav", "*/sound027.wav",
                "*/sound033.wav", "*/sound037.wav", "*/sound05[6-9].wav", "*/sound06?.wav", "*/sound07[0-3].wav")

# Premixture (the "in-the-wild" background of a user's recordings): real recordings of
# animals, vehicles and instruments, city and nature ambiences. Injection: effects, engines
# and crowds of 17 games (many sources, so that a model meets unseen noise well). Test: two
# other games' effects, never seen in training.
NOISE_GROUPS: Tuple[NoiseGroup, ...] = (
    NoiseGroup("qabcs", "qabcs-data", "usr/share/qabcs/abcs/all/noises/*.ogg", "premix"),
    NoiseGroup("lincity", "lincity-ng-data", "usr/share/games/lincity-ng/sounds/*.wav", "premix"),
    NoiseGroup("minetest", "minetest-data", "usr/share/games/minetest/games/minetest_game/mods/*/sounds/*.ogg",
               "premix"),
    NoiseGroup("hedgewars", "hedgewars-data", "usr/share/games/hedgewars/Data/Sounds/*.ogg", "inject",
               exclude=("*/[0-9][A-G].ogg", "*/ride_of_the_valkyries.ogg") + _VOCAL),
    NoiseGroup("scorched3d", "scorched3d-data", "usr/share/games/scorched3d/data/globalmods/**/*.wav", "inject",
               exclude=_VOCAL),
    NoiseGroup("netpanzer", "netpanzer-data", "usr/share/games/netpanzer/sound/**/*.wav", "inject", exclude=_VOCAL),
    NoiseGroup("btanks", "btanks-data", "usr/share/games/btanks/data/sounds/**/*.ogg", "inject", exclude=_VOCAL),
    NoiseGroup("frozenbubble", "frozen-bubble-data", "usr/share/games/frozen-bubble/snd/*.ogg", "inject",
               exclude=("*zik*",) + _VOCAL),
    NoiseGroup("etw", "etw-data", "usr/share/games/etw/*/*.wav", "inject", exclude=("*/music/*",) + _VOCAL),
    NoiseGroup("searchandrescue", "searchandrescue-data", "usr/share/games/searchandrescue/sounds/**/*", "inject",
               exclude=_VOCAL),
    NoiseGroup("crrcsim", "crrcsim-data", "usr/share/games/crrcsim/sounds/**/*", "inject", exclude=_VOCAL),
    NoiseGroup("caveexpress", "caveexpress-data", "usr/share/games/caveexpress/sounds/*", "inject", exclude=_VOCAL),
    NoiseGroup("lugaru", "lugaru-data", "usr/share/games/lugaru/Sounds/*", "inject", exclude=_VOCAL),
    NoiseGroup("tuxpaint", "tuxpaint-data", "usr/share/tuxpaint/sounds/*", "inject", exclude=_VOCAL),
    NoiseGroup("heroes", "heroes-sound-effects", "usr/share/games/heroes/sfx/*", "inject", exclude=_VOCAL),
    NoiseGroup("lbreakout2", "lbreakout2-data", "usr/share/games/lbreakout2/sounds/*", "inject", exclude=_VOCAL),
    NoiseGroup("mirrormagic", "mirrormagic-data", "usr/share/games/mirrormagic/sounds/**/*", "inject",
               exclude=_VOCAL),
    NoiseGroup("ardentryst", "ardentryst", "usr/share/games/ardentryst/Sounds/**/*", "inject", exclude=_VOCAL),
    NoiseGroup("wordwarvi", "wordwarvi-sound", "usr/share/wordwarvi/sounds/*", "inject", exclude=_VOCAL),
    NoiseGroup("wesnoth", "wesnoth-1.16-data", "usr/share/games/wesnoth/1.16/data/core/sounds/**/*",
               "test", exclude=_VOCAL),
    NoiseGroup("planetblupi", "planetblupi-common", "usr/share/planetblupi/sound/en/*.wav", "test",
               exclude=_BLUPI_VOICE),
)


def packages(voices: Sequence[VoiceFamily] = VOICE_FAMILIES,
             noise: Sequence[NoiseGroup] = NOISE_GROUPS) -> List[str]:
    """Every package the corpus reads, sorted."""
    return sorted({v.package for v in voices} | {n.package for n in noise})


def check_inventory(voices: Sequence[VoiceFamily] = VOICE_FAMILIES,
                    noise: Sequence[NoiseGroup] = NOISE_GROUPS) -> None:
    """Refuse reserved packages and a package shared by two bank families."""
    for name in packages(voices, noise):
        if is_reserved(name):
            raise ValueError(f"package {name} is reserved for independent evaluation and must not be read")
    family_of: Dict[str, str] = {}
    for group in noise:
        other = family_of.setdefault(group.package, group.family)
        if other != group.family:
            raise ValueError(f"package {group.package} feeds both the {other} and the {group.family} banks")


def pattern_regex(pattern: str) -> "re.Pattern":
    """Compile a VoiceFamily/NoiseGroup pattern; ``<voice>`` becomes the group ``voice``."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("<voice>", i):
            out.append(r"(?P<voice>[A-Za-z0-9_]+)")
            i += len("<voice>")
        elif pattern.startswith("**/", i):
            out.append(r"(?:[^/]+/)*")
            i += 3
        elif pattern[i] == "*":
            out.append(r"[^/]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def package_root(debian_dir: Path, package: str) -> Path:
    if is_reserved(package):
        raise ValueError(f"package {package} is reserved for independent evaluation and must not be read")
    return debian_dir / package


def matching_files(debian_dir: Path, package: str, pattern: str,
                   exclude: Iterable[str] = ()) -> List[Tuple[Path, Optional[str]]]:
    """(file, voice or None) for every audio file of ``package`` matching ``pattern``, sorted."""
    root = package_root(debian_dir, package)
    if not (root / ".version").is_file():
        raise FileNotFoundError(
            f"package {package} is not unpacked in {debian_dir}; run "
            f"'python -m espnet2_pse.bin.fetch_debian --debian_dir {debian_dir}' (or make -C tools)"
        )
    regex = pattern_regex(pattern)
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            rel = path.relative_to(root).as_posix()
            match = regex.match(rel)
            if match and not any(fnmatch.fnmatchcase(rel, e) for e in exclude):
                found.append((path, match.groupdict().get("voice")))
    return sorted(found)


def default_debian_dir() -> Path:
    """``$ESPNET2_PSE_DEBIAN_DIR``, else ``~/.cache/espnet2_pse/debian`` (shared by clones)."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "espnet2_pse" / "debian"


def unpacked_versions(debian_dir: Path, names: Sequence[str]) -> Dict[str, str]:
    """package -> unpacked version (read from ``<package>/.version``)."""
    versions = {}
    for name in names:
        marker = package_root(debian_dir, name) / ".version"
        versions[name] = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
    return versions


def _run(cmd: List[str], cwd: Optional[Path] = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout


def fetch(debian_dir: Path, names: Sequence[str], update_lists: bool = False) -> Dict[str, str]:
    """Download and unpack ``names`` into ``debian_dir``; returns package -> version.

    A package already unpacked at the version apt offers is left alone. Each package is
    unpacked into a temporary folder and renamed into place, so a folder with a ``.version``
    file is always complete.
    """
    for name in names:
        if is_reserved(name):
            raise ValueError(f"package {name} is reserved for independent evaluation and must not be fetched")
    missing_tools = [t for t in ("apt-get", "apt-cache", "dpkg-deb") if shutil.which(t) is None]
    if missing_tools:
        raise RuntimeError(
            f"fetching Debian packages needs {', '.join(missing_tools)} (a Debian or Ubuntu system); "
            f"elsewhere unpack these packages into {debian_dir}/<package>/ yourself: {' '.join(names)}"
        )
    if update_lists:
        _run(["apt-get", "update", "-qq"])
    debian_dir.mkdir(parents=True, exist_ok=True)
    versions = {}
    for name in names:
        policy = _run(["apt-cache", "policy", name])
        match = re.search(r"Candidate:\s*(\S+)", policy)
        if not match or match.group(1) == "(none)":
            raise RuntimeError(
                f"apt knows no package {name}; run 'apt-get update' as root (Debian 12 has it)"
            )
        version = match.group(1)
        root = debian_dir / name
        marker = root / ".version"
        if marker.is_file() and marker.read_text(encoding="utf-8").strip() == version:
            versions[name] = version
            continue
        logging.info("fetching %s %s into %s", name, version, root)
        with tempfile.TemporaryDirectory(dir=debian_dir, prefix=f".{name}.") as tmp:
            _run(["apt-get", "download", "-q", f"{name}={version}"], cwd=Path(tmp))
            debs = list(Path(tmp).glob("*.deb"))
            if len(debs) != 1:
                raise RuntimeError(f"apt-get download {name} left {len(debs)} .deb files")
            tree = Path(tmp) / "tree"
            _run(["dpkg-deb", "-x", str(debs[0]), str(tree)])
            (tree / ".version").write_text(version + "\n", encoding="utf-8")
            if root.exists():
                shutil.rmtree(root)
            os.replace(tree, root)
        versions[name] = version
    return versions
