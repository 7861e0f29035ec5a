#!/usr/bin/env bash
# Stage script of the personalized speech enhancement recipe (egs2/pse_ssl/pse1).
#
#   ./pse.sh [--stage N] [--stop_stage M] [options]     (usually through ./run.sh)
#
# Stages:
#   1  data preparation          local/data.sh ${local_data_opts}
#   2  format / filter / collect stats
#   3  auxiliary models          DP SNR predictor (when a _dp method is selected); with
#                                --spk_encoder true: speaker teacher, distilled student, EERs and
#                                the teacher's enrollment embeddings
#   4  generalists               one per size (espnet2.bin.launch, DDP), and the speaker-conditioned
#                                generalist per size with --spk_encoder true
#   5  SSL specialists           per target speaker, size and method: the zero-shot models
#   6  few-shot fine-tuning      for each d in --fsl_durations, from the generalist and each SSL model
#   7  inference and scoring     RESULTS.md tables and PNG plots (conditioned generalist: static
#                                vs refined embedding for clean, short and noisy enrollment)
#   8  pack and upload           ESPnet model zips; Hugging Face upload when --hf_repo is given
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
# shellcheck source=utils/pse_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/utils/pse_lib.sh"
# shellcheck source=utils/spk_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/utils/spk_lib.sh"
# shellcheck source=utils/pse_setup.sh
. "$(dirname "${BASH_SOURCE[0]}")/utils/pse_setup.sh"

# --------------------------------------------------------------------------------------------
# Options (every variable below is an option: --stop_stage 3 or --stop-stage 3 sets stop_stage)
# --------------------------------------------------------------------------------------------
stage=1                # first stage to run
stop_stage=8           # last stage to run
python=python3         # python command (several words allowed, e.g. "coverage run --append")
cmd_backend=local      # job runner: local (utils/run.pl) or slurm (utils/slurm.pl, conf/slurm.conf)
ngpu=0                 # GPUs per node for training (0: CPU)
num_nodes=1            # nodes for training (> 1 needs --cmd_backend slurm)
nj=2                   # parallel jobs for data and statistics stages
train_nj=2             # trainings run at once (on CPU each uses one core)
inference_nj=2         # parallel jobs for inference
gpu_inference=false    # run inference on GPU
dumpdir=dump           # formatted data
expdir=exp             # models, logs, scores and done markers
local_data_opts=""     # options for local/data.sh (run.sh adds --corpus)
speakers=""            # target speakers to personalize for (empty: all targets in data/roles.yaml)
sizes="cpu"            # model sizes: cpu (CPU default), stft (STFT-domain, personalize's real-voice
                       # default) or the paper's tiny small medium large
methods="pseudo_se pseudo_se_dp cm cm_dp"   # SSL methods (_dp: with data purification)
fsl_durations="5"      # clean seconds for few-shot fine-tuning
train_conf_dir=conf    # training configs train_{generalist,ssl,fsl,snr_predictor}.yaml (conf/paper: GPU)
pse_config=""          # training config for the specialists (empty: ${train_conf_dir}/train_ssl.yaml)
generalist_config=""   # training config for the generalists (empty: ${train_conf_dir}/train_generalist.yaml)
generalist_noise="inject_train"   # noise banks (data/noise/<bank>) pooled for the generalists' training
generalist_model=""    # a packed generalist (zip) taken as the generalist of the one --sizes instead of
                       # training it, e.g. ../../../espnet2_pse/pretrained/generalist_stft.zip
generalist_talkers=0   # share of the generalists' inputs with another training voice as a talker
generalist_speed_perturb=""  # speed factors: each generalist training voice also played at those speeds, as new voices
conditioned_config=""  # training config for the conditioned generalists (empty: the generalists')
conditioned_init=""    # conditioned generalists start from: random (empty), generalist (the plain one
                       # of the same size, trained first), or a checkpoint file
pse_args=""            # extra options for every training run, e.g. "--max_epoch 2"
inference_model=valid.loss.best.pth   # checkpoint used by inference and packing
# Stage-7 metrics (espnet2_pse.bin.score); add dnsmos,pdnsmos (about 1 s a file and model on
# one core) for the DNS personalized track's scores.
score_metrics=si_sdr,snr,pesq,estoi,spk_sim
skip_upload_hf=true    # skip the Hugging Face upload in stage 8
hf_repo=""             # Hugging Face repository id (user/name) for stage 8
hf_remote_url=""       # push to this git URL instead of https://huggingface.co/<hf_repo>
upload_model=""        # packed model to upload (a name in <expdir>/packed; empty: the first specialist)
spk_encoder=true       # speaker teacher + distilled student + conditioned generalists (issue 5)
spk_teacher=ecapa      # speaker teacher: ecapa (trained in-recipe) or resemblyzer (pretrained GE2E, offline)
spk_teacher_tag=""     # pretrained model-zoo teacher (e.g. espnet/voxcelebs12_rawnet3; network) instead
spk_teacher_config=conf/tuning/train_spk_teacher.yaml   # in-recipe teacher (ESPnet speaker task)
spk_student_config=conf/tuning/train_spk_student.yaml   # student distillation (spk_distill_train)
refine_config=conf/tuning/refine.yaml                    # refinement options for stage 7
enroll_seconds=5       # clean (and noisy) enrollment length for the conditioned models
short_enroll_seconds=1.5   # short enrollment length

# Fixed settings (read-only, so parse_options refuses them as options).
readonly datadir=data  # written by local/data.sh (stage 1)
readonly known_sizes="cpu stft tiny small medium large"
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
  --train_nj N          trainings run at once; on CPU each uses one core (default: ${train_nj})
  --inference_nj N      parallel jobs for inference (default: ${inference_nj})
  --gpu_inference BOOL  inference on GPU (default: ${gpu_inference})
  --dumpdir DIR         formatted data (default: ${dumpdir})
  --expdir DIR          models, logs, scores and done markers (default: ${expdir})
  --local_data_opts STR options for local/data.sh (default: '${local_data_opts}')
  --speakers "A B"      target speakers (default: all targets in ${datadir}/roles.yaml)
  --sizes "S ..."       model sizes among: ${known_sizes} (default: '${sizes}')
  --methods "M ..."     SSL methods among: ${known_methods} (default: '${methods}')
  --fsl_durations "D .." clean seconds for few-shot fine-tuning (default: '${fsl_durations}')
  --train_conf_dir DIR  training configs; conf/paper holds the paper's GPU setting (default: ${train_conf_dir})
  --pse_config FILE     specialist training config (default: the one in conf/)
  --generalist_config FILE  generalist training config (default: the one in conf/)
  --generalist_noise "B .."  noise banks pooled for the generalists (default: '${generalist_noise}')
  --generalist_model ZIP  use this packed generalist for the one size of --sizes instead of
                        training it in stage 4 (default: '${generalist_model}')
  --generalist_talkers P  share of the generalists' training inputs that also hold another
                        training voice (never the example's own) at 0-10 dB (default: ${generalist_talkers})
  --generalist_speed_perturb "F .."  stage 2 adds each generalist training utterance played F
                        times as fast as a voice of its own, e.g. "0.9 1.1" (default: '${generalist_speed_perturb}')
  --conditioned_config FILE  conditioned generalists' training config (default: the generalists')
  --conditioned_init X  conditioned generalists start from random weights (empty), 'generalist'
                        (the plain one of the same size; FiLM starts at identity) or a
                        checkpoint FILE (default: '${conditioned_init}')
  --pse_args STR        extra options for every training run (default: '${pse_args}')
  --inference_model F   checkpoint for inference and packing (default: ${inference_model})
  --score_metrics M,..  stage-7 metrics; dnsmos,pdnsmos add the DNS track's (default: ${score_metrics})
  --skip_upload_hf BOOL skip the Hugging Face upload (default: ${skip_upload_hf})
  --hf_repo USER/NAME   Hugging Face repository for stage 8 (default: none)
  --hf_remote_url URL   push to this git remote instead of huggingface.co (default: none)
  --upload_model NAME   packed model to upload (default: the first zero-shot specialist)
  --spk_encoder BOOL    speaker teacher, student, conditioned generalists (default: ${spk_encoder})
  --spk_teacher NAME    ecapa (trained in-recipe) or resemblyzer (Resemblyzer's pretrained GE2E,
                        offline, 256-d; run.sh's default on debian_real) (default: ${spk_teacher})
  --spk_teacher_tag TAG pretrained model-zoo teacher instead; needs network (default: none)
  --spk_teacher_config F, --spk_student_config F, --refine_config F
                        speaker-encoder configs (default: ${spk_teacher_config}, ${spk_student_config},
                        ${refine_config})
  --enroll_seconds S    clean/noisy enrollment seconds (default: ${enroll_seconds})
  --short_enroll_seconds S  short enrollment seconds (default: ${short_enroll_seconds})
  --config FILE         read name=value defaults from FILE (command-line options win)
  --help                show this message

Rerunning skips finished steps (markers in <expdir>/done_markers and <model dir>/.done) and
resumes killed trainings from their last checkpoint.
EOF
)
readonly help_message

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


stage_2_format() {
    # shellcheck disable=SC2086
    ${python} -m espnet2_pse.bin.format_data --data_root "${datadir}" --dump_root "${dumpdir}" \
        --min_seconds 1.0 --fsl_durations ${fsl_durations} --speed_perturb ${generalist_speed_perturb}
}

stage_3_aux_models() {
    [ "${spk_encoder}" = false ] || [ -f "${dumpdir}/spk/.done" ] || die "no speaker-encoder sets in" \
        "${dumpdir}/spk (stage 2 needs >= 2 validation speakers); add speakers or use --spk_encoder false"
    if [[ " ${methods} " == *_dp* ]]; then
        pool_run launch_train "${expdir}/snr_predictor" espnet2_pse.bin.snr_predictor_train \
            --config "${train_conf_dir}/train_snr_predictor.yaml" \
            --noise_scp "${PWD}/${datadir}/noise/premix_train/wav.scp" \
            --train_data_path_and_name_and_type "${dumpdir}/generalist/train/spk1.scp,speech,sound" \
            --train_shape_file "${dumpdir}/generalist/train/speech_shape" \
            --valid_data_path_and_name_and_type "${dumpdir}/generalist/valid/spk1.scp,speech,sound" \
            --valid_shape_file "${dumpdir}/generalist/valid/speech_shape"
    else
        log "  no DP method among '${methods}': the SNR predictor is not needed"
    fi
    [ "${spk_encoder}" = true ] && [ -z "$(pretrained_teacher)" ] && pool_run train_spk_teacher
    pool_wait
    if [ "${spk_encoder}" = true ]; then stage_3_speaker_encoders; fi
}

stage_4_generalists() {
    local size enroll=${expdir}/enroll init
    for size in ${sizes}; do
        if [ -n "${generalist_model}" ]; then
            install_packed_model "${generalist_model}" "${expdir}/generalist_${size}/model"
            continue
        fi
        pool_run train_pse "${expdir}/generalist_${size}/model" generalist "${size}" supervised \
            "${dumpdir}/generalist/train" "${dumpdir}/generalist/valid" false
    done
    [ "${spk_encoder}" = true ] || { pool_wait; return 0; }
    [ "${conditioned_init}" = generalist ] && pool_wait  # they start from the plain generalists
    for size in ${sizes}; do
        init=()
        case "${conditioned_init}" in
            "") ;;
            generalist) init=(--init_param "${expdir}/generalist_${size}/model/${inference_model}") ;;
            *) init=(--init_param "${conditioned_init}") ;;
        esac
        # shellcheck disable=SC2046  # spk_dim_args gives an option and its value, or nothing
        pool_run train_pse "${expdir}/conditioned_${size}/model" conditioned "conditioned/${size}" supervised \
            "${dumpdir}/generalist/train" "${dumpdir}/generalist/valid" false $(spk_dim_args separator_conf) \
            --train_data_path_and_name_and_type "${enroll}/train/enroll_spk1.scp,enroll_ref1,npy" \
            --valid_data_path_and_name_and_type "${enroll}/valid/enroll_spk1.scp,enroll_ref1,npy" "${init[@]}"
    done
    pool_wait
}

stage_5_ssl_specialists() {
    local size method spk premix
    for spk in $(target_speakers); do
        premix=$(needs_premix "${spk}")
        for size in ${sizes}; do
            for method in ${methods}; do
                pool_run train_pse "${expdir}/${method}_${size}/zsl/${spk}/model" ssl "${size}" "${method}" \
                    "${dumpdir}/speakers/${spk}/pretrain" "${dumpdir}/speakers/${spk}/preval" "${premix}"
            done
        done
    done
    pool_wait
}

# Zero-shot model of METHOD (generalist or an SSL method) for SIZE and SPK.
zsl_model_dir() {
    if [ "$1" = generalist ]; then echo "${expdir}/generalist_$2/model"; else echo "${expdir}/$1_$2/zsl/$3/model"; fi
}

stage_6_few_shot() {
    local size method spk d src
    for spk in $(target_speakers); do
        for size in ${sizes}; do
            for method in generalist ${methods}; do
                src=$(zsl_model_dir "${method}" "${size}" "${spk}")/${inference_model}
                [ -f "${src}" ] || die "few-shot start point ${src} is missing: run stages 4-5 first"
                for d in ${fsl_durations}; do
                    pool_run train_pse "${expdir}/${method}_${size}/fsl_${d}s/${spk}/model" fsl "${size}" supervised \
                        "${dumpdir}/speakers/${spk}/fsl_train_${d}s" "${dumpdir}/speakers/${spk}/fsl_val_${d}s" \
                        false --init_param "${src}"
                done
            done
        done
    done
    pool_wait
}

# Every (model, test set) pair of the grid as evaluate jobs: config model test_dir out_dir. A
# speaker's interfering-talker test set (stage 1 with --interferer_test true) is scored by the
# same models into ${expdir}/interferer/, with the same layout.
evaluation_jobs() {
    local size method spk d model test out
    for spk in $(target_speakers); do
        for test in "${dumpdir}/speakers/${spk}/test" "${dumpdir}/speakers/${spk}/test_interferer"; do
            [ -d "${test}" ] || continue
            out=${expdir}
            [ "${test##*/}" = test_interferer ] && out=${expdir}/interferer
            echo "- - ${test} ${out}/unprocessed/${spk}"
            for size in ${sizes}; do
                for method in generalist ${methods}; do
                    model=$(zsl_model_dir "${method}" "${size}" "${spk}")
                    echo "${model}/config.yaml ${model}/${inference_model} ${test} ${out}/${method}_${size}/zsl/${spk}"
                    for d in ${fsl_durations}; do
                        model=${expdir}/${method}_${size}/fsl_${d}s/${spk}/model
                        echo "${model}/config.yaml ${model}/${inference_model} ${test} ${out}/${method}_${size}/fsl_${d}s/${spk}"
                    done
                done
            done
        done
        test=${dumpdir}/speakers/${spk}/test
        for size in ${sizes}; do
            [ "${spk_encoder}" = true ] || continue
            # Conditioned generalist: each enrollment condition, static and refined embedding, the
            # refinement's hop loop with e_0 alone (alpha 1), which separates the effect of
            # hop-wise processing from that of the refined embedding, and the input-side ablation
            # (the student embeds the mixture instead of the enhanced output).
            model=${expdir}/conditioned_${size}/model
            for enroll in "${expdir}/enroll/speakers/${spk}"/*.npy; do
                [ -f "${enroll}" ] || die "no enrollment embeddings in ${expdir}/enroll/speakers/${spk}: run stage 3"
                d=${expdir}/conditioned_${size}/enroll/$(basename "${enroll}" .npy)
                echo "${model}/config.yaml ${model}/${inference_model} ${test} ${d}_static/${spk} ${enroll}"
                echo "${model}/config.yaml ${model}/${inference_model} ${test} ${d}_hoploop/${spk} ${enroll} ${expdir}/spk_student/refine_e0.yaml"
                echo "${model}/config.yaml ${model}/${inference_model} ${test} ${d}_refined/${spk} ${enroll} ${expdir}/spk_student/refine.yaml"
                echo "${model}/config.yaml ${model}/${inference_model} ${test} ${d}_refined_input/${spk} ${enroll} ${expdir}/spk_student/refine_input.yaml"
            done
        done
    done
}

stage_7_score() {
    local logdir=${expdir}/evaluate n
    mkdir -p "${logdir}"
    [ "${spk_encoder}" = true ] && write_refine_configs
    evaluation_jobs >"${logdir}/jobs.txt"
    n=$(wc -l <"${logdir}/jobs.txt")
    [ "${inference_nj}" -lt "${n}" ] || inference_nj=${n}
    split -n "r/${inference_nj}" -d -a 3 --additional-suffix=.txt "${logdir}/jobs.txt" "${logdir}/jobs."
    for n in $(seq 0 $((inference_nj - 1))); do mv "${logdir}/jobs.$(printf %03d "${n}").txt" "${logdir}/jobs.$((n + 1)).txt"; done
    log "  enhancing and scoring $(wc -l <"${logdir}/jobs.txt") model/test-set pairs in ${inference_nj} job(s) (logs: ${logdir})"
    local device=cpu
    [ "${gpu_inference}" = true ] && device=cuda
    ${decode_cmd} JOB=1:"${inference_nj}" "${logdir}/evaluate.JOB.log" \
        ${python} -m espnet2_pse.bin.evaluate --jobs "${logdir}/jobs.JOB.txt" --device "${device}" \
        --metrics "${score_metrics}"
    [ "${spk_encoder}" = true ] && spk_cost
    ${python} -m espnet2_pse.bin.make_results --exp_dir "${expdir}" --out "${expdir}/RESULTS.md"
    log "  results: ${PWD}/${expdir}/RESULTS.md"
}

stage_8_pack_upload() {
    local list=${expdir}/packed/models.txt line config model out
    mkdir -p "${expdir}/packed"
    # One zip per model dir (the generalist serves every speaker), named after its path; a
    # conditioned model carries the teacher and student of its embedding space.
    evaluation_jobs | awk '$1 != "-" && !seen[$2]++ {print $1, $2}' | while read -r config model; do
        out=$(dirname "${model}")
        out=${out#"${expdir}"/}
        line="${config} ${model} ${expdir}/packed/$(echo "${out%/model}" | tr / -).zip"
        [[ "${out}" == conditioned_* ]] && line+=" $(spk_pack_extras)"
        echo "${line}"
    done >"${list}"
    local options=()
    [ -f "${expdir}/RESULTS.md" ] && options=(--option "${expdir}/RESULTS.md")
    ${python} -m espnet2_pse.bin.pack_models --list "${list}" --relative_to "${PWD}" "${options[@]}"
    log "  packed models: ${PWD}/${expdir}/packed"
    if [ "${skip_upload_hf}" = true ]; then
        log "  Hugging Face upload skipped (give --skip_upload_hf false --hf_repo user/name to upload)"
        return 0
    fi
    local packed=${upload_model:-$(awk '$3 !~ /generalist/ {print $3; exit}' "${list}")}
    [ -f "${packed}" ] || packed=${expdir}/packed/${upload_model%.zip}.zip
    [ -f "${packed}" ] || die "--upload_model: no packed model ${packed}"
    local remote=()
    [ -n "${hf_remote_url}" ] && remote=(--remote_url "${hf_remote_url}")
    ${python} -m espnet2_pse.bin.hf_upload --packed_model "${packed}" --hf_repo "${hf_repo}" \
        --results "${expdir}/RESULTS.md" "${remote[@]}"
}

main() {
    . utils/parse_options.sh
    [ $# -eq 0 ] || die "unexpected arguments: $* (options are written --name value; see --help)"
    # Set after the options are parsed, so they cannot be set from the command line.
    # current_stage is global: the exit trap reads it after set -e has unwound main.
    local stages_done=() stages_skipped=() stage_result=""
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
        "Done: ${stages_done[*]:-none}; skipped (already done): ${stages_skipped[*]:-none}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
