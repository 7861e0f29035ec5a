"""Front ends: framing/overlap-add helpers and the conv and STFT encoders/decoders rebuilt."""

import pytest
import torch
import torch.nn.functional as F
from espnet2.enh.decoder.conv_decoder import ConvDecoder
from espnet2.enh.decoder.stft_decoder import STFTDecoder
from espnet2.enh.encoder.conv_encoder import ConvEncoder
from espnet2.enh.encoder.stft_encoder import STFTEncoder

from espnet2_pse.export.conv_frontend import ConvFrontEnd
from espnet2_pse.export.framing import fit_length, frame_signal, overlap_add
from espnet2_pse.export.stft_frontend import STFTFrontEnd


@pytest.mark.parametrize("frame,hop", [(16, 8), (32, 16), (512, 128), (10, 4)])
def test_framing_and_overlap_add_match_unfold_and_conv_transpose(frame, hop):
    x = torch.randn(2, 1000)
    frames = frame_signal(x, frame, hop)
    torch.testing.assert_close(frames, x.unfold(1, frame, hop), rtol=0, atol=0)
    eye = torch.eye(frame)[:, None, :]
    expected = F.conv_transpose1d(frames.transpose(1, 2), eye, stride=hop)[:, 0]
    torch.testing.assert_close(overlap_add(frames, hop), expected, rtol=1e-6, atol=1e-5)
    assert fit_length(expected, 1000, hop).shape == (2, 1000)


@pytest.mark.parametrize("samples", [16000, 16077, 300])
def test_conv_frontend_equals_espnet_conv_encoder_decoder(samples):
    torch.manual_seed(0)
    encoder, decoder = ConvEncoder(64, 32, 16), ConvDecoder(64, 32, 16)
    x = torch.randn(2, samples)
    lengths = torch.tensor([samples, samples])
    feature, _ = encoder(x, lengths)
    mask = torch.rand(feature.shape)
    expected = decoder(feature * mask, lengths)[0]
    front = ConvFrontEnd(encoder, decoder)
    coded, magnitude = front.analyze(x)
    torch.testing.assert_close(coded, feature, rtol=1e-5, atol=1e-5)
    assert magnitude is coded  # the mask network sees the (non-negative) encoder output
    torch.testing.assert_close(front.synthesize(coded, mask.clone(), samples), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("conf", [
    dict(n_fft=512, win_length=512, hop_length=128, window="hann"),
    dict(n_fft=256, win_length=200, hop_length=64, window="hamming"),
])
@pytest.mark.parametrize("use_fft", [True, False])
def test_stft_frontend_equals_espnet_stft_encoder_decoder(conf, use_fft):
    """Both torch.stft and the DFT bases (the exported graph) give ESPnet's samples."""
    torch.manual_seed(0)
    encoder, decoder = STFTEncoder(**conf), STFTDecoder(**conf)
    x = torch.randn(2, 8077)
    lengths = torch.tensor([8077, 8077])
    spec, _ = encoder(x, lengths)
    mask = torch.rand(spec.shape)
    expected = decoder(spec * mask, lengths)[0]
    front = STFTFrontEnd(encoder, decoder, use_fft=use_fft)
    coded, magnitude = front.analyze(x)
    torch.testing.assert_close(magnitude, spec.abs(), rtol=1e-4, atol=1e-4)
    out = front.synthesize(coded, mask, 8077)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_stft_frontend_refuses_what_it_does_not_rebuild():
    encoder = STFTEncoder(512, hop_length=128, spec_transform_type="exponent")
    with pytest.raises(ValueError, match="spec_transform_type 'exponent'"):
        STFTFrontEnd(encoder, STFTDecoder(512, hop_length=128))
    with pytest.raises(ValueError, match="differ in hop_length"):
        STFTFrontEnd(STFTEncoder(512, hop_length=128), STFTDecoder(512, hop_length=256))
