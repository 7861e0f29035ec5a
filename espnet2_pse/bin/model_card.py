"""Write the Hugging Face model card (README.md) of a packed espnet2_pse model.

Usage:
    python -m espnet2_pse.bin.model_card --packed_model exp/pack/model.zip --hf_repo user/name \
        --results exp/RESULTS.md --out exp/pack/README.md

The card has YAML front matter (library_name espnet, audio-to-audio, the personalized-SE tags,
license, datasets, the metrics RESULTS.md reports), usage that states that
``pip install espnet2_pse`` and ``import espnet2_pse`` come before
``SeparateSpeech.from_pretrained``, the results and the training config.
``python -m espnet2_pse.bin.hf_upload`` renders the same card when it uploads.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import espnet2_pse
from espnet2_pse.scoring.files import atomic_write_text
from espnet2_pse.scoring.model_card import DEFAULT_LICENSE, PackedModelError, read_packed_model, render_model_card

logger = logging.getLogger("espnet2_pse.bin.model_card")


def card_for(args: argparse.Namespace) -> str:
    """Render the card described by parsed ``args`` (shared with hf_upload)."""
    results: Optional[str] = None
    if args.results is not None:
        if not args.results.is_file():
            raise FileNotFoundError(f"results file not found: {args.results}")
        results = args.results.read_text(encoding="utf-8")
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    return render_model_card(
        read_packed_model(args.packed_model),
        args.hf_repo,
        results_md=results,
        license_=args.license,
        datasets=datasets,
        plugin_version=espnet2_pse.__version__,
    )


def add_card_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--packed_model", type=Path, required=True, help="zip written by espnet2.bin.pack")
    parser.add_argument("--hf_repo", required=True, help="hub repository id, user/name (used in the usage text)")
    parser.add_argument("--results", type=Path, default=None, help="RESULTS.md to include (and take metrics from)")
    parser.add_argument("--license", default=DEFAULT_LICENSE, help="license id for the card metadata")
    parser.add_argument(
        "--datasets", default="", help="comma-separated dataset ids for the card metadata, e.g. librispeech_asr"
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write the Hugging Face model card of a packed espnet2_pse model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_card_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="README.md to write")
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    atomic_write_text(args.out, card_for(args))
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    try:
        main()
    except (PackedModelError, FileNotFoundError) as err:
        logger.error("%s", err)
        sys.exit(1)
