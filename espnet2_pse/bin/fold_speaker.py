#!/usr/bin/env python3
"""One voice folded into a speaker-conditioned model: ``python -m espnet2_pse.bin.fold_speaker``.

    python -m espnet2_pse.bin.fold_speaker --model espnet2_pse/pretrained/conditioned_stft.zip \\
        --enroll me.wav more_of_me/ --out my_voice.zip
    pse-enhance --model my_voice.zip noisy/ --out_dir enhanced/     # no --enroll: the voice is inside
    pse-export --model my_voice.zip --out my_voice.onnx              # what a conditioned model cannot

The enrollment (audio files and folders of them, any rate and channel count) is embedded by
the teacher packed with the model; the unit-norm centroid of those embeddings is folded into
the network (:mod:`espnet2_pse.spk.fold`). The result is a plain model that computes what
``enhance --model <conditioned> --enroll <the same centroid>`` computes, and that also runs on
the fast and ONNX paths, exports, and serves as a ``personalize --base``.

Exit status: 0 written; 2 usage error (the model is not speaker-conditioned or holds no
teacher, an enrollment file is unusable: the message names it).
"""

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import yaml

from espnet2_pse.bin.personalize_progress import pack
from espnet2_pse.data.audio import SAMPLE_RATE, find_audio_files
from espnet2_pse.inference.model_loading import resolve_model
from espnet2_pse.spk.fold import CONDITIONED_SEPARATOR, fold_user_recordings, is_conditioned


def enrollment_files(items: List[str]) -> List[Path]:
    """The audio files given, folders expanded (recursively); a missing item is an error."""
    files: List[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = find_audio_files(path)
            if not found:
                raise ValueError(f"--enroll {path}: the folder holds no .wav/.flac files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"--enroll {path}: no such file or folder")
    return files


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a speaker-conditioned model packed with its teacher (zip, dir, HF id)")
    p.add_argument("--enroll", nargs="+", required=True, help="audio files or folders of the voice to fold in")
    p.add_argument("--out", required=True, help="the plain model to write (.zip)")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    out = Path(args.out).absolute()
    with tempfile.TemporaryDirectory(prefix="pse_fold_") as tmp:
        work = Path(tmp)
        try:
            if out.suffix != ".zip":
                raise ValueError(f"--out {args.out}: the model must be written as a .zip file")
            files = resolve_model(args.model, work / "model")
            if not is_conditioned(yaml.safe_load(files.train_config.read_text(encoding="utf-8"))):
                raise ValueError(f"model {args.model} is not speaker-conditioned ({CONDITIONED_SEPARATOR}): "
                                 "there is no voice to fold in")
            enroll = enrollment_files(args.enroll)
            folded = fold_user_recordings(files, enroll, work / "exp" / "folded", SAMPLE_RATE)
        except (ValueError, OSError) as err:  # ModelNotFoundError and AudioError included
            logging.error("%s", err)
            return 2
        summary = work / "exp" / "folded" / "fold_speaker.yaml"
        summary.write_text(yaml.safe_dump({"conditioned_model": str(args.model),
                                           "enrollment": [str(p) for p in enroll]}, sort_keys=False))
        pack(work, folded.train_config, folded.model_file, out, summary)
    logging.info("wrote %s: %s with the voice of %d enrollment file(s) folded in", out, args.model, len(enroll))
    return 0


if __name__ == "__main__":
    sys.exit(main())
