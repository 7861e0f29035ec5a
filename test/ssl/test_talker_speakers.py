"""Speaker-aware talker injection: a bank holding the training voices never gives an example
its own voice (generalists trained with interfering talkers, pse.sh --generalist_talkers)."""

import numpy as np
import pytest
import soundfile
import torch

from espnet2_pse.data.kaldi_dir import DataDirError, speaker_indices, write_speaker_index
from espnet2_pse.ssl.mixing import TalkerInjector
from espnet2_pse.ssl.noise_bank import NoiseBank
from espnet2_pse.ssl.pseudo_se import PseudoSE


@pytest.fixture
def signed_bank(tmp_path):
    """Four clips: speaker A's are constant +0.1, speaker B's -0.1, so a crop's sign names it."""
    scp, utt2spk = [], []
    for i, (spk, value) in enumerate([("A", 0.1), ("A", 0.1), ("B", -0.1), ("B", -0.1)]):
        path = tmp_path / f"{spk}_{i}.wav"
        soundfile.write(path, np.full(4000, value, np.float32), 16000)
        scp.append(f"{spk}_{i} {path}\n")
        utt2spk.append(f"{spk}_{i} {spk}\n")
    (tmp_path / "wav.scp").write_text("".join(scp))
    (tmp_path / "utt2spk").write_text("".join(utt2spk))
    return tmp_path


def test_bank_rows_avoid_their_label_and_draw_the_rest_uniformly(signed_bank):
    labels = dict(line.split() for line in (signed_bank / "utt2spk").read_text().splitlines())
    bank = NoiseBank(str(signed_bank / "wav.scp"), labels=labels)
    gen = torch.Generator().manual_seed(0)
    crops = bank.sample(400, 50, gen, avoid=["A"] * 200 + ["B"] * 200)
    assert (crops[:200] < 0).all() and (crops[200:] > 0).all()
    free = bank.sample(400, 50, gen)
    assert 0.4 < (free[:, 0] > 0).float().mean() < 0.6  # without avoid both speakers come
    with pytest.raises(ValueError, match="needs the bank's labels"):
        NoiseBank(str(signed_bank / "wav.scp")).sample(2, 50, gen, avoid=["A", "B"])
    with pytest.raises(ValueError, match="every clip .* is labelled 'A'"):
        NoiseBank(str(signed_bank / "wav.scp"), labels={k: "A" for k in labels}).sample(1, 50, gen, avoid=["A"])
    with pytest.raises(ValueError, match="no label for 1 key.*'B_3'"):
        NoiseBank(str(signed_bank / "wav.scp"), labels={k: v for k, v in labels.items() if k != "B_3"}).sample(1, 50, gen)


def test_injector_maps_speaker_indices_through_the_banks_utt2spk(signed_bank, tmp_path):
    injector = TalkerInjector(str(signed_bank / "wav.scp"), prob=1.0, alone_prob=0.0,
                              utt2spk=str(signed_bank / "utt2spk"))
    gen = torch.Generator().manual_seed(1)
    source = 0.1 * torch.randn(300, 80, generator=gen)
    targets = torch.tensor([0, 1, 1] * 100)[:, None]  # (B, 1), as ESPnet collates text_int
    talker, _ = injector(source, gen, targets)
    own_voice_sign = torch.where(targets[:, 0] == 0, 1.0, -1.0)  # index 0 = "A" (sorted names)
    assert ((talker[:, 0] * own_voice_sign) < 0).all()
    with pytest.raises(ValueError, match="needs their indices as 'spk_index'"):
        injector(source, gen)
    with pytest.raises(ValueError, match="spk_index 2 is outside the 2 speakers"):
        injector(source[:1], gen, torch.tensor([[2]]))


def test_speaker_index_file_follows_sorted_speaker_names(signed_bank):
    assert speaker_indices({"u1": "bob", "u2": "al", "u3": "bob"}) == {"u1": 1, "u2": 0, "u3": 1}
    out = write_speaker_index(signed_bank)
    assert out.read_text() == "A_0 0\nA_1 0\nB_2 1\nB_3 1\n"


def test_pseudo_se_reads_the_speakers_from_the_batch(signed_bank, tiny_corpus):
    objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), talker_scp=str(signed_bank / "wav.scp"),
                         talker_utt2spk=str(signed_bank / "utt2spk"), talker_prob=1.0, talker_alone_prob=1.0,
                         batch_scaling=False)
    speech = 0.1 * torch.randn(50, 60, generator=torch.Generator().manual_seed(0))
    made = objective.make_batch(speech, torch.ones_like(speech), torch.ones(50, 1, dtype=torch.long))
    talker = made["input"] - speech  # talker alone: no injection noise
    assert (talker > 0).all()  # speaker index 1 = "B": every talker is A
    with pytest.raises(ValueError, match="talker_utt2spk needs talker_scp"):
        PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), talker_utt2spk=str(signed_bank / "utt2spk"))


def test_talker_files_are_read_on_first_use_only(signed_bank, tiny_corpus, tmp_path):
    """A trained model's config names training files that a user does not have: building the
    objective (inference) needs none of them; training names the missing one."""
    objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), talker_scp=str(tmp_path / "gone/spk1.scp"),
                         talker_utt2spk=str(tmp_path / "gone/utt2spk"), talker_prob=1.0)
    speech = 0.1 * torch.randn(2, 60, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataDirError, match="gone/utt2spk: table not found"):
        objective.make_batch(speech, torch.ones_like(speech), torch.zeros(2, 1, dtype=torch.long))
