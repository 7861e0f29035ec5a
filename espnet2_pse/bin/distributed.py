"""The end of a DDP rank of our training entry points (run by ``espnet2.bin.launch``)."""

import os
import sys


def end_rank() -> None:
    """End a distributed rank without the interpreter's teardown; nothing outside DDP.

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
