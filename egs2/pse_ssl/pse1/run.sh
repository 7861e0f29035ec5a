#!/usr/bin/env bash
# Personalized speech enhancement recipe: corpus choices only; the stages live in pse.sh.
#
#   ./run.sh                                   embedded synthetic corpus, stages 1-8
#   ./run.sh --corpus librispeech              LibriSpeech + noise corpora (paths in db.sh)
#   ./run.sh --corpus debian_real              real voices and sound effects from Debian packages
#                                              (python -m espnet2_pse.bin.fetch_debian unpacks them)
#   ./run.sh --corpus user --local_data_opts "--user_noisy_dir DIR [--user_clean_dir DIR]"
#   ./run.sh --stage 7 --stop_stage 7          any pse.sh option (./run.sh --help lists them)
set -euo pipefail
cd "$(dirname "$0")"

corpus=embedded        # embedded | librispeech | debian_real | user
local_data_opts=""     # extra options for local/data.sh (e.g. the user's folders)
known_corpora="embedded librispeech debian_real user"

usage() {
    # The header comment (up to the first code line) is the usage text.
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
    echo
    echo "run.sh options:"
    echo "  --corpus NAME          one of: ${known_corpora} (default: ${corpus})"
    echo "  --local_data_opts STR  extra options for local/data.sh (default: none)"
    echo
    echo "Every other option goes to pse.sh:"
    ./pse.sh --help
}

# Take the corpus options out; everything else is handed to pse.sh unchanged.
pse_opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        --help | -h)
            usage
            exit 0
            ;;
        --corpus=*)
            corpus=${1#*=}
            shift
            ;;
        --local_data_opts=* | --local-data-opts=*)
            local_data_opts=${1#*=}
            shift
            ;;
        --corpus | --local_data_opts | --local-data-opts)
            [ $# -ge 2 ] || { echo "run.sh: option $1 needs a value" >&2; exit 1; }
            if [ "$1" = --corpus ]; then corpus=$2; else local_data_opts=$2; fi
            shift 2
            ;;
        --*=*)
            pse_opts+=("$1")
            shift
            ;;
        --*)
            # Every pse.sh option takes a value: keep the pair together.
            pse_opts+=("$1")
            shift
            if [ $# -gt 0 ]; then
                pse_opts+=("$1")
                shift
            fi
            ;;
        *)
            pse_opts+=("$1")
            shift
            ;;
    esac
done
[[ " ${known_corpora} " == *" ${corpus} "* ]] || {
    echo "run.sh: unknown --corpus '${corpus}' (choose from: ${known_corpora})" >&2
    exit 1
}

# Real voices get the pretrained GE2E teacher (thousands of real speakers) rather than an ECAPA
# trained on the corpus's few dozen, and a student distillation measured on real voices
# (bench/bench_spk_real.py); options given here come later and win.
corpus_defaults=()
[ "${corpus}" = debian_real ] && corpus_defaults=(--spk_teacher resemblyzer
    --spk_student_config conf/tuning/train_spk_student_real.yaml)
exec ./pse.sh --local_data_opts "--corpus ${corpus}${local_data_opts:+ ${local_data_opts}}" \
    "${corpus_defaults[@]}" "${pse_opts[@]}"
