"""Stage 1 data layer: corpora, splits, fixed mixtures and Kaldi-style data dirs.

Entry point: ``python -m espnet2_pse.bin.prepare_data``. Modules:
  audio           reading with input checks, resampling, PCM_16 writing, rejected-file lists
  kaldi_dir       validated, atomic Kaldi data dirs
  mixing          the one SNR mixing rule
  splits          the paper's per-speaker partition; ``take_seconds`` for d-second FSL subsets
  fixed_mixtures  test/validation mixtures written once with their references
  layout          corpus sources -> the data contract (roles, noise banks, speaker dirs)
  embedded        offline synthetic corpus (synth_speech: espeak-ng, synth_noise: numpy)
  real_corpora    LibriSpeech, FSD50K, MUSAN (download: locating or fetching them)
  user            a person's own recordings as a target speaker
  prepare         the stage driver (done markers, reruns)
"""
