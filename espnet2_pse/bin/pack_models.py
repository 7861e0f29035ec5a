"""Stage 8 of the recipe: pack trained models as ESPnet model zips, in one process.

``python -m espnet2_pse.bin.pack_models --list models.txt [--option RESULTS.md]``

Each line of the list is ``<train_config> <model_file> <out_zip>``. The zips are the ones
``python -m espnet2.bin.pack enh`` writes (meta.yaml, config, weights, options), so
``SeparateSpeech.from_pretrained(<zip>)`` loads them after ``import espnet2_pse``. Each zip
is written to a temporary name and renamed; existing zips are kept (delete one to repack).
"""

import argparse
import logging
import os
from pathlib import Path

from espnet2.main_funcs.pack_funcs import pack


def pack_one(train_config: Path, model_file: Path, out_zip: Path, options) -> None:
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    # ESPnet's pack() names the archive format from the suffix: keep ".zip" last.
    tmp = out_zip.with_name(f".{out_zip.stem}.tmp{os.getpid()}.zip")
    pack(
        files={"model_file": model_file},
        yaml_files={"train_config": train_config},
        outpath=tmp,
        option=options,
    )
    tmp.rename(out_zip)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", type=Path, required=True, help="lines: <train_config> <model_file> <out_zip>")
    parser.add_argument("--option", type=Path, action="append", default=[], help="extra file to pack")
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (pack_models) %(message)s")
    entries = [line.split() for line in args.list.read_text().splitlines() if line.strip()]
    for lineno, entry in enumerate(entries, 1):
        if len(entry) != 3:
            raise SystemExit(f"{args.list}:{lineno}: expected '<train_config> <model_file> <out_zip>'")
    for i, (config, model, out) in enumerate(entries, 1):
        if Path(out).is_file():
            logging.info("[%d/%d] %s exists; kept", i, len(entries), out)
            continue
        pack_one(Path(config), Path(model), Path(out), args.option)
        logging.info("[%d/%d] packed %s", i, len(entries), out)


if __name__ == "__main__":
    main()
