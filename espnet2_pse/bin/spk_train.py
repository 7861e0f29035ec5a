"""Train an ESPnet speaker model (the teacher): ``python -m espnet2_pse.bin.spk_train``.

``espnet2.bin.spk_train`` itself (same options, same outputs), started after
``import espnet2_pse`` so that ESPnet is imported quietly (no NLTK download attempt, no
deprecation noise in the training log).
"""

from typing import List, Optional

import espnet2_pse  # noqa: F401  (the quiet ESPnet import)
from espnet2.tasks.spk import SpeakerTask

from espnet2_pse.bin.distributed import end_rank


def get_parser():
    return SpeakerTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    SpeakerTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
    end_rank()
