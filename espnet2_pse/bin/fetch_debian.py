#!/usr/bin/env python3
"""Fetch the Debian packages of the ``debian_real`` corpus: ``python -m espnet2_pse.bin.fetch_debian``.

Each package is downloaded with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into
``<debian_dir>/<package>/`` (no root needed once apt's package lists exist; nothing is
installed system-wide). Rerunning skips packages already unpacked at apt's version.

Examples:
    python -m espnet2_pse.bin.fetch_debian                   # into ~/.cache/espnet2_pse/debian
    python -m espnet2_pse.bin.fetch_debian --list            # print the package names only
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from espnet2_pse.data import debian_sources


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Download and unpack the Debian packages of the debian_real corpus.")
    p.add_argument("--debian_dir", default="",
                   help=f"target folder (default: ${debian_sources.ENV_DIR} or ~/.cache/espnet2_pse/debian)")
    p.add_argument("--list", action="store_true", help="print the package names and exit")
    p.add_argument("--update", choices=("auto", "always", "never"), default="auto",
                   help="run 'apt-get update' first: auto = only as root when apt does not know a package")
    return p


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    debian_sources.check_inventory()
    names = debian_sources.packages()
    if args.list:
        print(" ".join(names))
        return 0
    target = Path(args.debian_dir).absolute() if args.debian_dir else debian_sources.default_debian_dir()
    start = time.perf_counter()
    try:
        try:
            versions = debian_sources.fetch(target, names, update_lists=args.update == "always")
        except RuntimeError as err:
            if args.update != "auto" or os.geteuid() != 0 or "apt knows no package" not in str(err):
                raise
            logging.info("apt does not know every package yet; running apt-get update")
            versions = debian_sources.fetch(target, names, update_lists=True)
    except (RuntimeError, ValueError, OSError) as err:
        logging.error("%s", err)
        logging.error("needed packages: %s", " ".join(names))
        return 1
    size = sum(f.stat().st_size for n in names for f in (target / n).rglob("*") if f.is_file()) / 1e6
    logging.info("%d packages in %s (%.0f MB) in %.0f s", len(versions), target, size, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
