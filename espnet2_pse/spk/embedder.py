"""One waveform in, one unit-norm speaker embedding out: the student or the teacher."""

from typing import Callable, Optional

import torch
import torch.nn.functional as F

# (T,) waveform at the model rate -> (D,) L2-normalised embedding (no gradient).
Embedder = Callable[[torch.Tensor], torch.Tensor]


def load_embedder(
    model_type: str,
    train_config: Optional[str] = None,
    model_file: Optional[str] = None,
    model_tag: Optional[str] = None,
    device: str = "cpu",
) -> Embedder:
    """Embedder from a distilled student (spk_distill_train) or a teacher speaker model.

    Args:
        model_type: "student" or "teacher".
        train_config, model_file: the model's config.yaml and checkpoint.
        model_tag: pretrained teacher tag (needs network or cache); teachers only.
        device: torch device of the model.
    """
    if model_type == "student":
        from espnet2_pse.tasks.spk_distill import SpkDistillTask

        if not model_file:
            raise ValueError("a student embedder needs its model file (+ train config)")
        student = SpkDistillTask.build_student_from_file(train_config, model_file, device)

        def embed(wave: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return F.normalize(student(wave[None].to(device))[0].float(), dim=-1)

        return embed
    if model_type != "teacher":
        raise ValueError(f"model_type must be 'student' or 'teacher', got '{model_type}'")
    from espnet2_pse.spk.teacher import FrozenTeacher, load_teacher

    teacher = FrozenTeacher(load_teacher(train_config, model_file, model_tag, device))
    return lambda wave: teacher.embed(wave[None].to(device))[0]
