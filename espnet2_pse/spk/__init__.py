"""Classes of this subpackage that espnet2_pse registers into ESPnet."""


def register_classes(register):
    """Call ``register(choices, name, cls)`` for every class this subpackage provides."""
    from espnet2_pse.spk.aam_loss import AAMSoftmaxLoss, InfoNCEAAMLoss
    from espnet2_pse.spk.kd_losses import CosineKDLoss, InfoNCELoss, MSEKDLoss
    from espnet2_pse.spk.tiny_encoder import TinySpeakerEncoder
    from espnet2_pse.tasks.spk_distill import kd_loss_choices, student_choices

    register(student_choices, "tiny", TinySpeakerEncoder)
    register(kd_loss_choices, "infonce", InfoNCELoss)
    register(kd_loss_choices, "mse", MSEKDLoss)
    register(kd_loss_choices, "cosine", CosineKDLoss)
    # Baseline without a teacher: the student trained from scratch as a speaker classifier.
    register(kd_loss_choices, "aamsoftmax", AAMSoftmaxLoss)
    # Contrastive KD plus that classifier head (needs --spk2utt too).
    register(kd_loss_choices, "infonce_aam", InfoNCEAAMLoss)
