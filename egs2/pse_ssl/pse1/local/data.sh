#!/usr/bin/env bash
# Stage 1 data preparation for pse1: builds data/ (corpus, speaker roles, per-speaker splits,
# noise banks, fixed test/validation mixtures) and optionally adds a user's own recordings.
# Rerunning with the same options does nothing (data/.done is written last).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

[ -f ./path.sh ] && . ./path.sh
. ./db.sh

# Options (each can be given as --name value).
corpus=embedded          # embedded (offline, synthetic), librispeech (with FSD50K and MUSAN),
                         # debian_real (real voices and sound effects from Debian packages),
                         # or user (base_corpus + the recordings of --user_noisy_dir)
base_corpus=embedded     # with --corpus user: source of the noise banks and generalist speakers
                         # (embedded, librispeech or debian_real)
out=data                 # data root to create
seed=0
nj=2                     # parallel worker processes
# Empty split options take prepare_data's per-corpus defaults.
split_scale=             # scales the paper's 30/30/60/30 s splits (empty: 0.25 embedded,
                         # 2.0 debian_real, 1.0 librispeech)
test_mixtures=           # 4 s test mixtures per target speaker (empty: 20 embedded, 30 debian_real,
                         # 100 librispeech)
interferer_test=false    # also a test set per target with an interfering talker (test_interferer/)
val_mixtures=            # mixtures per fixed validation set (empty: 16 embedded, 32 debian_real,
                         # 64 librispeech)
num_speakers=16          # embedded corpus size knobs
num_target=2             # target speakers: 2 keep the default run near 15 min on 2 CPU cores
num_validation=4
minutes_per_speaker=1.75
noise_files_per_family=6
librispeech=${LIBRISPEECH}            # corpus roots (defaults from db.sh)
fsd50k=${FSD50K}
musan=${MUSAN}
librispeech_subsets=train-clean-100   # comma-separated; add train-clean-360 for the full generalist set
target_speakers=         # comma-separated LibriSpeech ids (empty: the paper's 20)
validation_speakers=     # comma-separated LibriSpeech ids (empty: the paper's 20)
debian_dir=${DEBIAN_REAL}             # unpacked Debian packages (default from db.sh; empty:
                                      # $ESPNET2_PSE_DEBIAN_DIR or ~/.cache/espnet2_pse/debian)
debian_targets=          # comma-separated debian_real target voices (empty: all six)
debian_target_minutes=   # minutes per target voice (empty: all of it)
debian_other_minutes=    # minutes per validation/generalist voice (empty: all of it)
debian_noise_minutes=    # minutes per noise package (empty: all of it)
download=false           # fetch missing corpora (needs the internet; debian_real: apt-get download)
download_dir=downloads
user_noisy_dir=          # bring your own user: folder of one person's noisy recordings
user_clean_dir=          # optional: a little clean speech of that person
user_test_dir=           # optional: noisy/ and clean/ subfolders with matching file names
user_name=user
python=${python:-python3}

help_message=$(cat <<EOM
Usage: $0 [options]
Prepares the data root for the pse1 recipe (stage 1).
  --corpus embedded|librispeech|debian_real|user   (default: ${corpus})
  --out DIR                       (default: ${out})
  --user_noisy_dir DIR [--user_clean_dir DIR] [--user_test_dir DIR] [--user_name NAME]
  --librispeech DIR --fsd50k DIR --musan DIR   (defaults: LIBRISPEECH, FSD50K, MUSAN in db.sh)
  --debian_dir DIR [--debian_targets A,B] [--debian_target_minutes M] [--debian_other_minutes M]
      [--debian_noise_minutes M]   (debian_real; --debian_dir default: DEBIAN_REAL in db.sh)
  --download true                 fetch missing corpora first (debian_real: fetch_debian)
  --interferer_test true          a second test set per target: an interfering talker + noise
See the option list at the top of this script.
EOM
)

. utils/parse_options.sh

if [ $# -gt 0 ]; then
    log "unexpected arguments: $*"
    exit 1
fi

args=(--out "${out}" --corpus "${corpus}" --base_corpus "${base_corpus}" --seed "${seed}" --nj "${nj}"
      --num_speakers "${num_speakers}" --num_target "${num_target}" --num_validation "${num_validation}"
      --minutes_per_speaker "${minutes_per_speaker}" --noise_files_per_family "${noise_files_per_family}"
      --librispeech_subsets "${librispeech_subsets}" --download "${download}" --download_dir "${download_dir}"
      --user_name "${user_name}" --interferer_test "${interferer_test}")
for name in split_scale test_mixtures val_mixtures librispeech fsd50k musan target_speakers \
            validation_speakers user_noisy_dir user_clean_dir user_test_dir debian_dir debian_targets \
            debian_target_minutes debian_other_minutes debian_noise_minutes; do
    if [ -n "${!name}" ]; then
        args+=("--${name}" "${!name}")
    fi
done

# prepare_data downloads the LibriSpeech corpora itself; the Debian packages have their own
# fetcher, which skips packages that are already unpacked.
source_corpus=${corpus}
[ "${corpus}" = user ] && source_corpus=${base_corpus}
if [ "${download}" = true ] && [ "${source_corpus}" = debian_real ]; then
    log "fetching the debian_real packages"
    ${python} -m espnet2_pse.bin.fetch_debian ${debian_dir:+--debian_dir "${debian_dir}"}
fi

log "preparing ${out} (corpus: ${corpus})"
${python} -m espnet2_pse.bin.prepare_data "${args[@]}"
log "data preparation finished: ${out}"
