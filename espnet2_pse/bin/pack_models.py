"""Stage 8 of the recipe: pack trained models as ESPnet model zips, in one process.

``python -m espnet2_pse.bin.pack_models --list models.txt [--option RESULTS.md]``

Each line of the list is ``<train_config> <model_file> <out_zip> [<key>=<file> ...]``: the
extra ``key=file`` pairs are packed too and named in meta.yaml (``*_config`` keys as YAML
files), e.g. the speaker teacher and student of a speaker-conditioned model
(``spk_teacher_config``, ``spk_teacher_model``, ``spk_student_config``,
``spk_student_model``, which ``espnet2_pse.bin.enhance`` then uses). The zips are the ones
``python -m espnet2.bin.pack enh`` writes (meta.yaml, config, weights, options), so
``SeparateSpeech.from_pretrained(<zip>)`` loads them after ``import espnet2_pse``. Each zip
is written to a temporary name and renamed; existing zips are kept (delete one to repack).
With ``--relative_to DIR`` (the recipe passes its own directory), paths under DIR in the
packed training configs are written relative to it, so a zip carries no machine paths.
"""

import argparse
import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import yaml
from espnet2.main_funcs.pack_funcs import pack


RESERVED = ("train_config", "model_file")


def parse_extras(fields: List[str], where: str) -> Dict[str, Path]:
    """``key=file`` fields -> {key: file}; keys must be new and the files exist."""
    extras = {}
    for item in fields:
        key, sep, path = item.partition("=")
        if not sep or not key or not path or key in RESERVED or key in extras:
            raise SystemExit(f"{where}: bad extra '{item}' (expected a new key=file; not {RESERVED})")
        if not Path(path).is_file():
            raise SystemExit(f"{where}: {key}: {path} does not exist")
        extras[key] = Path(path)
    return extras


def _relative_strings(value, prefix: str):
    """``value`` (YAML data) with every string that starts with ``prefix`` made relative."""
    if isinstance(value, str) and value.startswith(prefix):
        return value[len(prefix):]
    if isinstance(value, list):
        return [_relative_strings(v, prefix) for v in value]
    if isinstance(value, dict):
        return {k: _relative_strings(v, prefix) for k, v in value.items()}
    return value


def pack_one(train_config: Path, model_file: Path, out_zip: Path, options, extras: Dict[str, Path],
             relative_to: Optional[Path] = None) -> None:
    out_zip = out_zip.absolute()
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    # ESPnet's pack() names the archive format from the suffix: keep ".zip" last.
    tmp = out_zip.with_name(f".{out_zip.stem}.tmp{os.getpid()}.zip")
    files = {"model_file": model_file, **{k: v for k, v in extras.items() if not k.endswith("_config")}}
    configs = {"train_config": train_config, **{k: v for k, v in extras.items() if k.endswith("_config")}}
    if relative_to is None:
        pack(files=files, yaml_files=configs, outpath=tmp, option=options)
    else:
        # pack() stores each file under its path relative to the working directory: copy the
        # files, with the configs' paths made relative, into a scratch tree of the same layout.
        root = Path(os.path.normpath(relative_to.absolute()))
        prefix = str(root).rstrip("/") + "/"
        with tempfile.TemporaryDirectory() as scratch:
            def place(path: Path) -> str:
                path = Path(os.path.normpath(Path(path).absolute()))  # no ".." left to climb out
                rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
                (Path(scratch) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path.resolve(), Path(scratch) / rel)
                return str(rel)

            files = {k: place(v) for k, v in files.items()}
            placed_options = [place(o) for o in options]
            for key, config in list(configs.items()):
                configs[key] = place(config)
                data = yaml.safe_load((Path(scratch) / configs[key]).read_text(encoding="utf-8"))
                (Path(scratch) / configs[key]).write_text(
                    yaml.safe_dump(_relative_strings(data, prefix), sort_keys=False), encoding="utf-8")
            with contextlib.chdir(scratch):
                pack(files=files, yaml_files=configs, outpath=tmp, option=placed_options)
    tmp.rename(out_zip)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", type=Path, required=True,
                        help="lines: <train_config> <model_file> <out_zip> [<key>=<file> ...]")
    parser.add_argument("--option", type=Path, action="append", default=[], help="extra file to pack")
    parser.add_argument("--relative_to", type=Path, default=None,
                        help="write the packed configs' paths under this directory relative to it")
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (pack_models) %(message)s")
    entries = []
    for lineno, line in enumerate(args.list.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3:
            raise SystemExit(f"{args.list}:{lineno}: expected '<train_config> <model_file> <out_zip> [key=file ...]'")
        entries.append((*fields[:3], parse_extras(fields[3:], f"{args.list}:{lineno}")))
    for i, (config, model, out, extras) in enumerate(entries, 1):
        if Path(out).is_file():
            logging.info("[%d/%d] %s exists; kept", i, len(entries), out)
            continue
        pack_one(Path(config), Path(model), Path(out), args.option, extras, args.relative_to)
        logging.info("[%d/%d] packed %s", i, len(entries), out)


if __name__ == "__main__":
    main()
