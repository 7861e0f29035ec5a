"""Locating the real corpora, and fetching their official archives when asked.

``locate`` returns the corpus root when its expected layout is present (no network use at all),
downloads and extracts the official archives into ``download_dir`` when ``download`` is true,
and otherwise stops with a message naming the missing path and where to get the data.
"""

import logging
import os
import shutil
import subprocess
import tarfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

OPENSLR = "https://www.openslr.org/resources"
ZENODO_FSD50K = "https://zenodo.org/records/4060432/files"

# Official archives per corpus part; FSD50K's audio comes as split zips (.z01... + .zip).
ARCHIVES: Dict[str, List[str]] = {
    "train-clean-100": [f"{OPENSLR}/12/train-clean-100.tar.gz"],
    "train-clean-360": [f"{OPENSLR}/12/train-clean-360.tar.gz"],
    "musan": [f"{OPENSLR}/17/musan.tar.gz"],
    "fsd50k": [
        *(f"{ZENODO_FSD50K}/FSD50K.dev_audio.z0{i}" for i in range(1, 6)),
        f"{ZENODO_FSD50K}/FSD50K.dev_audio.zip",
        f"{ZENODO_FSD50K}/FSD50K.eval_audio.z01",
        f"{ZENODO_FSD50K}/FSD50K.eval_audio.zip",
        f"{ZENODO_FSD50K}/FSD50K.ground_truth.zip",
    ],
}


class CorpusMissingError(FileNotFoundError):
    """A corpus needed by the chosen recipe is not where db.sh says."""


def librispeech_subset_dir(root: Path, subset: str) -> Optional[Path]:
    """``root/LibriSpeech/<subset>`` (as extracted) or ``root/<subset>``, if it exists."""
    for cand in (root / "LibriSpeech" / subset, root / subset):
        if cand.is_dir():
            return cand
    return None


def fsd50k_ok(root: Path) -> bool:
    return (root / "FSD50K.ground_truth" / "dev.csv").is_file() and (root / "FSD50K.dev_audio").is_dir()


def musan_noise_dir(root: Path) -> Optional[Path]:
    """``root/musan/noise`` (as extracted) or ``root/noise``, if it has free-sound/."""
    for cand in (root / "musan" / "noise", root / "noise"):
        if (cand / "free-sound").is_dir():
            return cand
    return None


def _present(corpus: str, root: Path, parts: Sequence[str]) -> bool:
    if corpus == "librispeech":
        return all(librispeech_subset_dir(root, p) is not None for p in parts)
    if corpus == "fsd50k":
        return fsd50k_ok(root)
    if corpus == "musan":
        return musan_noise_dir(root) is not None
    raise ValueError(f"unknown corpus {corpus}")


def locate(
    corpus: str,
    path: Optional[str],
    download: bool,
    download_dir: Path,
    parts: Sequence[str] = (),
) -> Path:
    """Root directory of ``corpus`` ("librispeech", "fsd50k" or "musan").

    Args:
        path: configured location (db.sh); empty means "not configured".
        download: fetch the official archives into ``download_dir/<corpus>`` if absent.
        parts: LibriSpeech subsets needed (e.g. ["train-clean-100"]).
    """
    candidates = [Path(path)] if path else []
    candidates.append(Path(download_dir) / corpus)
    for root in candidates:
        if root.is_dir() and _present(corpus, root, parts):
            logging.info("%s found at %s; skipping download", corpus, root)
            return root.absolute()
    keys = list(parts) if corpus == "librispeech" else [corpus]
    urls = [u for k in keys for u in ARCHIVES[k]]
    if not download:
        where = path or "(not set)"
        raise CorpusMissingError(
            f"{corpus} not found at {where} (nor under {download_dir / corpus}); set "
            f"{corpus.upper()} in db.sh to the extracted corpus, or pass --download true to fetch: "
            + " ".join(urls)
        )
    root = Path(download_dir) / corpus
    _fetch_and_extract(urls, root)
    if not _present(corpus, root, parts):
        raise CorpusMissingError(
            f"{corpus}: downloaded archives did not produce the expected layout under {root}"
        )
    return root.absolute()


def _fetch(url: str, dst: Path) -> None:
    if dst.is_file():
        logging.info("already downloaded: %s", dst)
        return
    logging.info("downloading %s", url)
    tmp = dst.with_name(dst.name + ".part")
    with urllib.request.urlopen(url + ("?download=1" if "zenodo" in url else "")) as resp, open(
        tmp, "wb"
    ) as fp:
        shutil.copyfileobj(resp, fp, length=1 << 20)
    os.replace(tmp, dst)


def _fetch_and_extract(urls: Sequence[str], root: Path) -> None:
    """Download every URL into ``root``, then extract .tar.gz and (split) .zip archives there."""
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for url in urls:
        dst = root / url.rsplit("/", 1)[-1]
        _fetch(url, dst)
        files.append(dst)
    for f in files:
        if f.name.endswith(".tar.gz"):
            logging.info("extracting %s", f)
            with tarfile.open(f) as tar:
                tar.extractall(root, filter="data")
        elif f.suffix == ".zip":
            target = f
            if any(g.name.startswith(f.stem + ".z0") for g in files):
                # Split archive: join the parts with Info-ZIP first (Python's zipfile cannot).
                if shutil.which("zip") is None:
                    raise RuntimeError(f"{f}: joining a split zip needs the 'zip' tool (apt-get install zip)")
                target = f.with_name(f.stem + ".joined.zip")
                subprocess.run(["zip", "-q", "-s", "0", str(f), "--out", str(target)], check=True)
            logging.info("extracting %s", target)
            with zipfile.ZipFile(target) as zf:
                zf.extractall(root)
