"""Distil a tiny student speaker encoder from a frozen ESPnet speaker model.

Example:
    python -m espnet2_pse.bin.spk_distill_train --config conf/tuning/train_spk_student.yaml \
        --teacher_train_config exp/spk_teacher/config.yaml \
        --teacher_model_file exp/spk_teacher/valid.eer.best.pth \
        --train_data_path_and_name_and_type data/generalist/train/wav.scp,speech,sound \
        --train_data_path_and_name_and_type data/generalist/train/utt2spk,spk_labels,text \
        --noise_scp data/noise/inject_train/wav.scp ...
"""

from espnet2_pse.bin.distributed import end_rank
from espnet2_pse.tasks.spk_distill import SpkDistillTask


def get_parser():
    return SpkDistillTask.get_parser()


def main(cmd=None):
    """Train (``python -m espnet2_pse.bin.spk_distill_train --help`` lists the options)."""
    SpkDistillTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
    end_rank()
