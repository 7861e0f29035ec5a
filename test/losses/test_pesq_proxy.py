import numpy as np
import pytest
import torch

from espnet2_pse.losses.distances import distance
from espnet2_pse.losses.pesq_proxy import pesq_proxy, raw_mos, wideband_mos
from test.conftest import FS, synth_voice


def _voices(seed: int, batch: int = 2, seconds: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([synth_voice(rng, seconds, f0) for f0 in (110.0, 190.0)[:batch]]).astype(np.float64)


def test_a_copy_scores_the_top_of_the_scale_whatever_its_level():
    ref = torch.from_numpy(_voices(0))
    np.testing.assert_allclose(raw_mos(ref, ref).numpy(), 4.5, atol=2e-3)  # a floor keeps the norms smooth
    np.testing.assert_allclose(pesq_proxy(0.2 * ref, 3.0 * ref).numpy(), wideband_mos(torch.tensor(4.5)).item(),
                               atol=2e-3)
    noisy = ref + 0.02 * torch.from_numpy(np.random.default_rng(1).standard_normal(ref.shape))
    np.testing.assert_allclose(raw_mos(4.0 * noisy, ref).numpy(), raw_mos(noisy, 0.5 * ref).numpy(), rtol=1e-6)


def test_it_ranks_added_noise_as_pesq_does_and_stays_close_to_it():
    """Over white noise at four levels the proxy falls as pesq's wideband PESQ falls, and its
    scores are within 0.4 MOS of pesq's on this synthetic voice (whose pauses are digital
    silence, so that both saturate from about 40 dB SNR) (on real recordings of three
    voices its raw scores have a correlation of 0.94 with pesq's)."""
    from pesq import pesq

    ref = _voices(2)
    rng = np.random.default_rng(3)
    proxy, reference = [], []
    for level in (0.0001, 0.0003, 0.001, 0.002):
        est = ref + level * rng.standard_normal(ref.shape)
        proxy.append(pesq_proxy(torch.from_numpy(est), torch.from_numpy(ref)).numpy())
        reference.append([pesq(FS, r, e, "wb") for r, e in zip(ref, est)])
    proxy, reference = np.array(proxy), np.array(reference)
    assert (np.diff(proxy, axis=0) < 0).all() and (np.diff(reference, axis=0) < 0).all()
    np.testing.assert_allclose(proxy, reference, atol=0.4)


def test_it_weighs_added_noise_more_than_missing_speech():
    """PESQ's asymmetry: the same energy of error is worse as noise in the pauses than as
    speech taken away."""
    ref = torch.from_numpy(_voices(4, batch=1))
    silent = (ref.abs() < 1e-4).to(ref.dtype)
    noise = torch.from_numpy(np.random.default_rng(5).standard_normal(ref.shape)) * silent
    noise = noise * (0.3 * ref.norm() / noise.norm())
    attenuated = ref * (1 - 0.3)  # the error ref - attenuated has the same energy as the noise
    assert raw_mos(ref + noise, ref) < raw_mos(attenuated + 0 * noise, ref) - 0.5


def test_it_is_a_whole_signal_loss_with_gradients_that_raise_the_score():
    from espnet2_pse.losses.criterions import PSEDistanceLoss

    with pytest.raises(ValueError, match="no segmental version"):
        PSEDistanceLoss(distance="pesq", segmental=True)
    with pytest.raises(ValueError, match="at least 5376 samples"):
        distance("pesq", torch.zeros(1, 5000), torch.zeros(1, 5000))
    ref = torch.from_numpy(_voices(6, batch=1))
    est = (ref + 0.001 * torch.from_numpy(np.random.default_rng(7).standard_normal(ref.shape))).requires_grad_(True)
    before = raw_mos(est, ref).item()
    optimizer = torch.optim.Adam([est], lr=3e-3)
    for _ in range(20):
        optimizer.zero_grad()
        loss = PSEDistanceLoss(distance="pesq")(ref, est).sum()
        loss.backward()
        assert torch.isfinite(est.grad).all()
        optimizer.step()
    assert raw_mos(est, ref).item() > before + 0.3
    silence = torch.zeros_like(ref, requires_grad=True)
    distance("pesq", silence, ref).sum().backward()
    assert torch.isfinite(silence.grad).all()
