"""Stage 1 driver: build a data root once, then leave it alone.

A complete root has a ``.done`` file (written last) holding the settings it was built with.
Rerunning with the same settings does nothing; different settings stop with an error instead of
silently mixing two corpora. A root left by an interrupted run (``.building`` marker) is cleared
and rebuilt; each data dir inside is itself written atomically.
"""

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Union

import yaml

from espnet2_pse.data import debian_real, embedded, real_corpora
from espnet2_pse.data.audio import Rejections
from espnet2_pse.data.layout import LayoutConfig, write_layout, write_yaml

CORPORA = ("embedded", "debian_real", "librispeech")
# Everything a corpus build creates directly under the root.
ENTRIES = ("audio", "noise", "generalist", "speakers", "roles.yaml", "rejected.txt", ".done", ".building")


def _describe_difference(old: dict, new: dict, prefix: str = "") -> str:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff = _describe_difference(a, b, f"{prefix}{key}.")
            if diff:
                return diff
        elif a != b:
            return f"{prefix}{key}: {a!r} then, {b!r} now"
    return ""


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6 if folder.exists() else 0.0


def prepare_corpus(
    out: Union[str, os.PathLike],
    corpus: str,
    layout_cfg: LayoutConfig,
    corpus_cfg: Union[embedded.EmbeddedConfig, real_corpora.RealConfig, debian_real.DebianConfig],
    nj: int = 1,
) -> bool:
    """Build the data root ``out`` for ``corpus`` (one of :data:`CORPORA`).

    Returns:
        True if it was built now, False if it was already complete (no-op).
    """
    out = Path(out).absolute()
    layout_cfg.validate()
    corpus_cfg.validate()
    config = {"corpus": corpus, "layout": layout_cfg.to_dict(), "corpus_config": corpus_cfg.to_dict()}
    done = out / ".done"
    if done.is_file():
        old = (yaml.safe_load(done.read_text(encoding="utf-8")) or {}).get("config", {})
        diff = _describe_difference(old, config)
        if diff:
            raise ValueError(f"{out} was built with other settings ({diff}); remove {out} to rebuild it")
        logging.info("%s is complete (%s corpus); nothing to do", out, corpus)
        return False
    if (out / ".building").exists():
        logging.warning("%s: a previous build was interrupted; removing its partial outputs", out)
        for name in ENTRIES:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    elif any((out / name).exists() for name in ENTRIES):
        raise ValueError(
            f"{out} holds data without a .done marker (not a finished prepare_data run); remove it"
        )
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r} (choose one of {', '.join(CORPORA)})")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    (out / ".building").touch()
    start = time.time()
    rejections = Rejections()
    try:
        if corpus == "embedded":
            sources = embedded.build_sources(out, corpus_cfg, nj)
        elif corpus == "debian_real":
            sources = debian_real.build_sources(out, corpus_cfg, nj, rejections)
        else:
            sources = real_corpora.build_sources(out, corpus_cfg, nj, rejections)
    except Exception:
        # Failed before writing anything (e.g. a corpus not found): leave no trace behind.
        if [p.name for p in out.iterdir()] == [".building"]:
            (out / ".building").unlink()
            if created:
                out.rmdir()
        raise
    write_layout(out, sources, layout_cfg)
    rejections.write(out / "rejected.txt")
    stats = {
        "speakers": len(sources.speakers),
        "speech_minutes": round(sum(u.seconds for utts in sources.speakers.values() for u in utts) / 60, 2),
        "noise_minutes": {
            b: round(sum(i.seconds for i in items) / 60, 2) for b, items in sources.noise.items()
        },
        "rejected_files": len(rejections),
        "audio_mb": round(_size_mb(out / "audio"), 1),
        "build_seconds": round(time.time() - start, 1),
    }
    if sources.provenance:
        stats["provenance"] = dict(sources.provenance)
    write_yaml(done, {"config": config, "stats": stats})
    (out / ".building").unlink()
    logging.info("%s: done: %s", out, stats)
    return True
