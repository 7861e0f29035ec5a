"""Train a (personalized) speech enhancement model: ``python -m espnet2_pse.bin.pse_train``.

Same options as ``espnet2.bin.enh_train`` plus ``--ssl_objective`` and this package's
separators and criteria.
"""

import os
import sys
from typing import List, Optional

from espnet2_pse.tasks.pse import PSETask


def get_parser():
    return PSETask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    PSETask.main(cmd=cmd)


def _exit_after_distributed_run() -> None:
    """End a DDP rank without the interpreter's teardown.

    ESPnet leaves the process group open, and a gloo rank whose C++ threads are still
    running when the interpreter tears down can abort ("terminate called without an active
    exception") after a finished training, failing the whole job.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
    _exit_after_distributed_run()
