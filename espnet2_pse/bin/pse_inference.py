"""Enhance a data dir with a trained model: ``python -m espnet2_pse.bin.pse_inference``.

ESPnet's ``enh_inference`` (same options) with this package's classes registered, so models
using them load, and ``--fs`` defaulting to 16 kHz, the rate of every model here.
PSEModel adds no parameters, so the stock inference model is the right one.
"""

import sys
from typing import List, Optional

import espnet2_pse  # noqa: F401  (registers our classes before the parser is built)
from espnet2.bin import enh_inference
from espnet.utils.cli_utils import get_commandline_args

DEFAULT_FS = 16000


def get_parser():
    parser = enh_inference.get_parser()
    parser.set_defaults(fs=DEFAULT_FS)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    print(get_commandline_args(), file=sys.stderr)
    kwargs = vars(get_parser().parse_args(cmd))
    kwargs.pop("config", None)
    enh_inference.inference(**kwargs)


if __name__ == "__main__":
    main()
