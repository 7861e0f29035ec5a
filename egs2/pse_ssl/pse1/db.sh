# Corpus locations for the pse1 recipe (needed for --corpus librispeech; optional for debian_real).
# Point each variable at the extracted corpus, or leave it empty: with --download true the
# official archives are fetched into downloads/ (openslr 12 and 17, zenodo 4060432).
#   LIBRISPEECH: holds LibriSpeech/train-clean-100 (and train-clean-360 when used)
#   FSD50K:      holds FSD50K.dev_audio/, FSD50K.eval_audio/, FSD50K.ground_truth/
#   MUSAN:       holds musan/noise/free-sound and musan/noise/sound-bible
#   DEBIAN_REAL: the Debian packages of --corpus debian_real, unpacked by
#                `python -m espnet2_pse.bin.fetch_debian` (or make -C tools); empty:
#                $ESPNET2_PSE_DEBIAN_DIR, else ~/.cache/espnet2_pse/debian
# Values already set in the environment win.
LIBRISPEECH=${LIBRISPEECH:-}
FSD50K=${FSD50K:-}
MUSAN=${MUSAN:-}
DEBIAN_REAL=${DEBIAN_REAL:-}
