"""EmbeddingRefiner: the gate against other talkers and silence, causality, the blend."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from espnet2_pse.spk.refinement import EmbeddingRefiner, enhance_with_refinement
from test.conftest import FS, synth_voice


class BandEnergyStudent(torch.nn.Module):
    """Stand-in student: unit-norm log energies in 16 frequency bands (voice-dependent)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        spec = torch.fft.rfft(x, dim=-1).abs().pow(2)
        bands = torch.stack([b.sum(-1) for b in spec.chunk(16, dim=-1)], dim=-1)
        emb = torch.log(bands + 1e-6)
        return F.normalize(emb - emb.mean(-1, keepdim=True), dim=-1) * self.scale


def voice(f0, seconds=4.0, seed=0):
    return torch.tensor(synth_voice(np.random.default_rng(seed), seconds, f0))


@pytest.fixture
def student():
    return BandEnergyStudent()


def refiner_for(student, enrollment_audio, **kw):
    e0 = student(enrollment_audio[None])[0].detach()
    conf = dict(window_s=1.0, hop_s=0.5, alpha=0.5, ema_beta=0.5, cos_threshold=0.9)
    return EmbeddingRefiner(student, e0, **{**conf, **kw}), e0


def test_stand_in_student_separates_the_voices(student):
    a, a2, b = student(torch.stack([voice(120, seed=0), voice(120, seed=1), voice(450, seed=2)]))
    assert torch.dot(a, a2) > 0.9 > torch.dot(a, b)


def test_another_speaker_never_moves_the_embedding(student):
    refiner, e0 = refiner_for(student, voice(120, seed=0))
    trajectory = refiner.run(voice(450, seed=2))
    assert refiner.accepted == 0 and refiner.rejected == 7  # updates at 1.0, 1.5, ..., 4.0 s
    assert torch.allclose(refiner.enrollment, e0, atol=1e-6)
    assert torch.equal(trajectory, refiner.enrollment.expand_as(trajectory))
    assert torch.equal(refiner.embedding, refiner.enrollment)


def test_the_target_speaker_refines_the_embedding(student):
    refiner, e0 = refiner_for(student, voice(120, seed=0))
    refiner.run(voice(120, seed=1))
    assert refiner.accepted == 7 and refiner.rejected == 0
    assert not torch.allclose(refiner.embedding, e0)
    assert torch.dot(refiner.embedding, e0) > 0.9
    assert refiner.embedding.norm().item() == pytest.approx(1.0, abs=1e-6)


def test_alpha_one_keeps_the_enrollment(student):
    refiner, e0 = refiner_for(student, voice(120, seed=0), alpha=1.0)
    refiner.run(voice(120, seed=1))
    assert refiner.accepted == 7 and torch.allclose(refiner.embedding, e0, atol=1e-6)


def test_silence_is_skipped_without_running_the_student(student):
    refiner, e0 = refiner_for(student, voice(120, seed=0))
    calls = student.calls
    refiner.run(torch.zeros(3 * FS))
    assert refiner.rejected == 5 and student.calls == calls
    assert torch.equal(refiner.embedding, refiner.enrollment)


def test_loop_is_causal_and_independent_of_chunking(student):
    refiner, _ = refiner_for(student, voice(120, seed=0))
    stream = torch.cat([voice(120, seed=1), voice(450, seed=2, seconds=2.0)])
    full = refiner.run(stream)
    changed = stream.clone()
    changed[int(2.5 * FS):] = voice(300, seed=3)[: len(stream) - int(2.5 * FS)]
    other = refiner.run(changed)
    # Rows 0..5 condition hops starting at or before 2.5 s: they cannot see the change.
    assert torch.equal(full[:6], other[:6])

    refiner.reset()
    rng = np.random.default_rng(0)
    start, updates = 0, []
    while start < len(stream):
        size = int(rng.integers(1, FS))
        updates += refiner.push(stream[start : start + size])
        start += size
    # Updates at 1.0, 1.5, ..., 6.0 s (a full 1 s window first); row k >= 2 of the trajectory
    # is the update made at the end of hop k - 1; the one at 6.0 s conditions nothing.
    assert len(updates) == 11
    assert torch.allclose(torch.stack(updates[:-1]), full[2:], atol=1e-6)


def test_enhance_with_refinement_uses_each_embedding_for_its_hop(student):
    refiner, e0 = refiner_for(student, voice(120, seed=0))
    mixture = voice(120, seed=1, seconds=3.0)
    seen = []

    def enhance(segment, embedding):
        seen.append(embedding)
        return segment  # identity "separator"

    enhanced, used = enhance_with_refinement(enhance, mixture, refiner, context_s=1.0)
    assert torch.equal(enhanced, mixture)
    assert len(used) == 6 and torch.equal(used[0], refiner.enrollment)
    assert torch.allclose(used, refiner.run(mixture))
    assert all(torch.equal(a, b) for a, b in zip(seen, used))


def test_mixture_source_embeds_the_input_not_the_output(student):
    """Input-side ablation: the refiner follows the mixture even when the output is silent."""
    refiner, _ = refiner_for(student, voice(120, seed=0))
    mixture = voice(120, seed=1, seconds=3.0)
    _, from_output = enhance_with_refinement(lambda seg, emb: torch.zeros_like(seg), mixture, refiner,
                                             context_s=1.0)
    _, from_input = enhance_with_refinement(lambda seg, emb: torch.zeros_like(seg), mixture, refiner,
                                            context_s=1.0, source="mixture")
    assert torch.allclose(from_output, refiner.enrollment.expand_as(from_output))  # silence: skipped
    assert torch.allclose(from_input, refiner.run(mixture))
    with pytest.raises(ValueError, match="source"):
        enhance_with_refinement(lambda seg, emb: seg, mixture, refiner, source="input")


def test_invalid_settings_are_rejected(student):
    e0 = torch.ones(16)
    with pytest.raises(ValueError, match="alpha"):
        EmbeddingRefiner(student, e0, alpha=1.5)
    with pytest.raises(ValueError, match="ema_beta"):
        EmbeddingRefiner(student, e0, ema_beta=1.0)
    with pytest.raises(ValueError, match="hop_s"):
        EmbeddingRefiner(student, e0, hop_s=0)
    with pytest.raises(ValueError, match="non-zero"):
        EmbeddingRefiner(student, torch.zeros(16))
