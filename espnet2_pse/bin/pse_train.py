"""Train a (personalized) speech enhancement model: ``python -m espnet2_pse.bin.pse_train``.

Same options as ``espnet2.bin.enh_train`` plus ``--ssl_objective`` and this package's
separators and criteria.
"""

from typing import List, Optional

from espnet2_pse.bin.distributed import end_rank
from espnet2_pse.tasks.pse import PSETask


def get_parser():
    return PSETask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    PSETask.main(cmd=cmd)


if __name__ == "__main__":
    main()
    end_rank()
