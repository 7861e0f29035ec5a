#!/usr/bin/env bash
# Stage script of the personalized speech enhancement recipe (egs2/pse_ssl/pse1).
#
#   ./pse.sh [--stage N] [--stop_stage M] [options]     (usually through ./run.sh)
#
# Stages:
#   1  data preparation          local/data.sh ${local_data_opts}
#   2  format / filter / collect stats
#   3  auxiliary models          DP SNR predictor, speaker teacher, distilled student
#   4  generalists               plain and speaker-conditioned (espnet2.bin.launch, DDP)
#   5  SSL specialists           per target speaker, size and method: the zero-shot models
#   6  few-shot fine-tuning      for each d in --fsl_durations, from the generalist and each SSL model
#   7  inference and scoring     RESULTS.md tables and PNG plots
#   8  pack and upload           espnet2.bin.pack; Hugging Face upload when --hf_repo is given
#
# Rerunning is safe: finished steps leave done markers (exp/done_markers/<step>, and <exp>/.done
# for each trained model) and are skipped next time; delete a marker to redo its step. A killed
# training run resumes when pse.sh is run again with the same options: the model has no .done
# marker yet, so launch_train starts it again with --resume true and ESPnet continues from
# <exp>/checkpoint.pth, keeping every finished epoch.
#
# pse.sh can also be sourced (tests do): it then only defines its functions and defaults.
set -euo pipefail

log() {
    printf '%s (pse.sh) %s\n' "$(date '+%F %T')" "$*" >&2
}
die() {
    log "ERROR: $*"
    exit 1
}

# --------------------------------------------------------------------------------------------
# Options (every variable below is an option: --stop_stage 3 or --stop-stage 3 sets stop_stage)
# --------------------------------------------------------------------------------------------
stage=1                # first stage to run
stop_stage=8           # last stage to run
python=python3         # python command (several words allowed, e.g. "coverage run --append")
cmd_backend=local      # job runner: local (utils/run.pl) or slurm (utils/slurm.pl, conf/slurm.conf)
ngpu=0                 # GPUs per node for training (0: CPU)
num_nodes=1            # nodes for training (> 1 needs --cmd_backend slurm)
nj=4                   # parallel jobs for data and statistics stages
inference_nj=4         # parallel jobs for inference
gpu_inference=false    # run inference on GPU
dumpdir=dump           # formatted data
expdir=exp             # models, logs, scores and done markers
local_data_opts=""     # options for local/data.sh (run.sh adds --corpus)
speakers=""            # target speakers to personalize for (empty: all targets in data/roles.yaml)
sizes="tiny"           # model sizes: tiny small medium large
methods="pseudo_se pseudo_se_dp cm cm_dp"   # SSL methods (_dp: with data purification)
fsl_durations="5 10"   # clean seconds for few-shot fine-tuning
pse_config=""          # training config for the specialists (empty: the default in conf/)
pse_args=""            # extra options for every training run, e.g. "--max_epoch 2"
inference_model=valid.loss.best.pth   # checkpoint used by inference and packing
skip_upload_hf=true    # skip the Hugging Face upload in stage 8
hf_repo=""             # Hugging Face repository id (user/name) for stage 8

# Fixed settings (read-only, so parse_options refuses them as options).
readonly datadir=data  # written by local/data.sh (stage 1)
readonly known_sizes="tiny small medium large"
readonly known_methods="pseudo_se pseudo_se_dp cm cm_dp"
readonly last_stage=8

help_message=$(
    cat <<EOF
Usage: $0 [options]

Stages: 1 data preparation, 2 format/filter/stats, 3 auxiliary models, 4 generalists,
5 SSL specialists (zero-shot), 6 few-shot fine-tuning, 7 inference+scoring, 8 pack+upload.

Options (--name value, --name=value; dashes and underscores are equivalent):
  --stage N             first stage to run (default: ${stage})
  --stop_stage N        last stage to run (default: ${stop_stage})
  --python CMD          python command (default: ${python})
  --cmd_backend NAME    local (run.pl) or slurm (slurm.pl + conf/slurm.conf) (default: ${cmd_backend})
  --ngpu N              GPUs per node for training; 0 trains on CPU (default: ${ngpu})
  --num_nodes N         training nodes; > 1 needs --cmd_backend slurm (default: ${num_nodes})
  --nj N                parallel jobs for data/statistics (default: ${nj})
  --inference_nj N      parallel jobs for inference (default: ${inference_nj})
  --gpu_inference BOOL  inference on GPU (default: ${gpu_inference})
  --dumpdir DIR         formatted data (default: ${dumpdir})
  --expdir DIR          models, logs, scores and done markers (default: ${expdir})
  --local_data_opts STR options for local/data.sh (default: '${local_data_opts}')
  --speakers "A B"      target speakers (default: all targets in ${datadir}/roles.yaml)
  --sizes "S ..."       model sizes among: ${known_sizes} (default: '${sizes}')
  --methods "M ..."     SSL methods among: ${known_methods} (default: '${methods}')
  --fsl_durations "D .." clean seconds for few-shot fine-tuning (default: '${fsl_durations}')
  --pse_config FILE     specialist training config (default: the one in conf/)
  --pse_args STR        extra options for every training run (default: '${pse_args}')
  --inference_model F   checkpoint for inference and packing (default: ${inference_model})
  --skip_upload_hf BOOL skip the Hugging Face upload (default: ${skip_upload_hf})
  --hf_repo USER/NAME   Hugging Face repository for stage 8 (default: none)
  --config FILE         read name=value defaults from FILE (command-line options win)
  --help                show this message

Rerunning skips finished steps (markers in <expdir>/done_markers and <model dir>/.done) and
resumes killed trainings from their last checkpoint.
EOF
)
readonly help_message

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

# stage_done NAME [SIGNATURE]: succeeds when step NAME finished with the same SIGNATURE (the
# options it ran with), so changing those options redoes the step instead of skipping it.
stage_done() {
    local f="${expdir}/done_markers/$1"
    [ -f "${f}" ] && [ "$(cat "${f}")" = "${2:-}" ]
}

# mark_done NAME [SIGNATURE]: records that step NAME finished (written atomically).
mark_done() {
    local f="${expdir}/done_markers/$1"
    mkdir -p "$(dirname "${f}")"
    printf '%s\n' "${2:-}" >"${f}.tmp"
    mv "${f}.tmp" "${f}"
}

# launch_train EXP_DIR TRAIN_MODULE [ARGS...]
# Trains one model through espnet2.bin.launch: run.pl on this machine (DDP over --ngpu GPUs),
# or slurm.pl + srun across --num_nodes nodes. Skips when EXP_DIR/.done exists. Without it
# the run (re)starts with --resume true, so a killed training continues from its checkpoint.
# Call it as a plain command (not inside `if` or `||`) so that a failure stops pse.sh.
launch_train() {
    local exp=$1 module=$2
    shift 2
    if [ -f "${exp}/.done" ]; then
        log "  ${exp}: already trained (${exp}/.done exists); skipping"
        return 0
    fi
    mkdir -p "${exp}"
    log "  training ${exp} with ${module} (log: ${exp}/train.log)"
    # shellcheck disable=SC2086  # ${python} and ${cuda_cmd} may hold several words
    ${python} -m espnet2.bin.launch \
        --cmd "${cuda_cmd} --name $(basename "${exp}")" \
        --log "${exp}/train.log" \
        --ngpu "${ngpu}" \
        --num_nodes "${num_nodes}" \
        --init_file_prefix "${exp}/.dist_init_" \
        --multiprocessing_distributed true -- \
        ${python} -m "${module}" \
        --ngpu "${ngpu}" \
        --resume true \
        --output_dir "${exp}" \
        "$@"
    touch "${exp}/.done"
}

# Checks the options and sets up the environment (path.sh, cmd.sh).
setup() {
    local name value
    [ -f ./path.sh ] && [ -f ./cmd.sh ] || die "run pse.sh from the recipe directory (no ./path.sh or ./cmd.sh in ${PWD})"
    for name in stage stop_stage; do
        value=${!name}
        [[ "${value}" =~ ^[0-9]+$ ]] && [ "${value}" -ge 1 ] && [ "${value}" -le "${last_stage}" ] \
            || die "--${name} must be between 1 and ${last_stage}, got '${value}'"
    done
    [ "${stage}" -le "${stop_stage}" ] || die "--stage ${stage} is after --stop_stage ${stop_stage}: nothing to run"
    for name in ngpu num_nodes nj inference_nj; do
        value=${!name}
        [[ "${value}" =~ ^[0-9]+$ ]] || die "--${name} must be a non-negative integer, got '${value}'"
    done
    for name in num_nodes nj inference_nj; do
        [ "${!name}" -ge 1 ] || die "--${name} must be at least 1"
    done
    for value in ${sizes}; do
        [[ " ${known_sizes} " == *" ${value} "* ]] || die "--sizes: unknown size '${value}' (choose from: ${known_sizes})"
    done
    for value in ${methods}; do
        [[ " ${known_methods} " == *" ${value} "* ]] || die "--methods: unknown method '${value}' (choose from: ${known_methods})"
    done
    for value in ${fsl_durations}; do
        [[ "${value}" =~ ^[0-9]+([.][0-9]+)?$ ]] && [[ ! "${value}" =~ ^0+([.]0+)?$ ]] \
            || die "--fsl_durations: '${value}' is not a positive number of seconds"
    done
    [ -z "${pse_config}" ] || [ -f "${pse_config}" ] || die "--pse_config: file not found: ${pse_config}"
    if [ "${skip_upload_hf}" = false ] && [ -z "${hf_repo}" ]; then
        die "--skip_upload_hf false needs --hf_repo user/name"
    fi
    if [ "${num_nodes}" -gt 1 ] && [ "${cmd_backend}" = local ]; then
        die "--num_nodes ${num_nodes} needs a cluster: add --cmd_backend slurm (run.pl runs on this machine only)"
    fi
    # shellcheck disable=SC1091
    . ./path.sh
    # shellcheck disable=SC1091
    . ./cmd.sh
}

# run_stage N NAME FUNCTION: runs one stage when N is within --stage..--stop_stage, logging
# one line when it starts and one when it ends (with the elapsed seconds). It records the
# outcome in main's stages_* lists for the final summary.
run_stage() {
    local n=$1 name=$2 fn=$3 t0
    [ "${n}" -ge "${stage}" ] && [ "${n}" -le "${stop_stage}" ] || return 0
    current_stage="${n} (${name})"
    stage_result=done
    t0=${SECONDS}
    log "Stage ${n}/${last_stage} (${name}): start"
    "${fn}"
    case "${stage_result}" in
        done) stages_done+=("${n}") ;;
        skipped*) stages_skipped+=("${n}") ;;
        "not implemented"*) stages_not_implemented+=("${n}") ;;
    esac
    log "Stage ${n}/${last_stage} (${name}): ${stage_result} ($((SECONDS - t0)) s)"
    current_stage=""
}

# Placeholder body for a stage whose code has not landed yet: says so and does no work.
not_implemented() {
    local n=$1 name=$2 issue=$3
    log "stage ${n} (${name}): not implemented yet — ${issue} will wire it"
    stage_result="not implemented, nothing was done"
}

on_exit() {
    local rc=$?
    if [ "${rc}" -ne 0 ] && [ -n "${current_stage:-}" ]; then
        log "Stage ${current_stage}: FAILED (exit code ${rc})"
    fi
}

# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------

stage_1_data_prep() {
    local signature="local/data.sh ${local_data_opts}"
    [ -e local/data.sh ] || die "local/data.sh not found: stage 1 needs the corpus preparation script (data issue #3)"
    [ -x local/data.sh ] || die "local/data.sh is not executable (chmod +x local/data.sh)"
    if stage_done stage1_data "${signature}" && [ -f "${datadir}/roles.yaml" ]; then
        log "  data already prepared with '${signature}' (${expdir}/done_markers/stage1_data)"
        stage_result="skipped, already done"
        return 0
    fi
    # shellcheck disable=SC2086  # the options are split into words on purpose
    local/data.sh ${local_data_opts}
    [ -f "${datadir}/roles.yaml" ] || die "local/data.sh finished but ${datadir}/roles.yaml is missing"
    mark_done stage1_data "${signature}"
}

stage_2_format() { not_implemented 2 "format / filter / collect stats" "issue 6"; }
stage_3_aux_models() { not_implemented 3 "auxiliary models" "issues 4 and 5"; }
stage_4_generalists() { not_implemented 4 "generalists" "issues 4 and 5"; }
stage_5_ssl_specialists() { not_implemented 5 "SSL specialists" "issue 4"; }
stage_6_few_shot() { not_implemented 6 "few-shot fine-tuning" "issue 4"; }
stage_7_score() { not_implemented 7 "inference and scoring" "issue 6"; }
stage_8_pack_upload() { not_implemented 8 "pack and upload" "issue 6"; }

main() {
    . utils/parse_options.sh
    [ $# -eq 0 ] || die "unexpected arguments: $* (options are written --name value; see --help)"
    # Set after the options are parsed, so they cannot be set from the command line.
    # current_stage is global: the exit trap reads it after set -e has unwound main.
    local stages_done=() stages_skipped=() stages_not_implemented=() stage_result=""
    current_stage=""
    setup
    trap on_exit EXIT
    local t0=${SECONDS}
    log "$0 --stage ${stage} --stop_stage ${stop_stage} (backend ${cmd_backend}, ngpu ${ngpu}, num_nodes ${num_nodes})"

    run_stage 1 "data preparation" stage_1_data_prep
    run_stage 2 "format / filter / collect stats" stage_2_format
    run_stage 3 "auxiliary models" stage_3_aux_models
    run_stage 4 "generalists" stage_4_generalists
    run_stage 5 "SSL specialists" stage_5_ssl_specialists
    run_stage 6 "few-shot fine-tuning" stage_6_few_shot
    run_stage 7 "inference and scoring" stage_7_score
    run_stage 8 "pack and upload" stage_8_pack_upload

    log "Finished stages ${stage}-${stop_stage} in $((SECONDS - t0)) s." \
        "Done: ${stages_done[*]:-none}; skipped (already done): ${stages_skipped[*]:-none};" \
        "not implemented: ${stages_not_implemented[*]:-none}"
    if [ ${#stages_not_implemented[@]} -gt 0 ]; then
        log "Stages not implemented: ${stages_not_implemented[*]}; their outputs were not produced."
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
