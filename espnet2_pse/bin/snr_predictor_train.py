"""Train the frame-SNR predictor of Data Purification (ESPnet trainer).

    python -m espnet2_pse.bin.snr_predictor_train --help
"""

from typing import Optional, Sequence

from espnet2_pse.bin.distributed import end_rank


def get_parser():
    """The task's argument parser (all ESPnet training options plus the task's own)."""
    import espnet2_pse  # noqa: F401  (registers espnet2_pse's classes)
    from espnet2_pse.tasks.snr_predictor import SNRPredictorTask

    return SNRPredictorTask.get_parser()


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Run training; ``cmd`` is the argument list (None: sys.argv)."""
    import espnet2_pse  # noqa: F401
    from espnet2_pse.tasks.snr_predictor import SNRPredictorTask

    SNRPredictorTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
    end_rank()
