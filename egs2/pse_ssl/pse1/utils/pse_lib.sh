# Generic helpers of pse.sh (sourced by it): the stage runner, done markers, training launch, a
# job pool, config composition, data lookups (target speakers, noise banks) and one enhancement
# training (train_pse). They use pse.sh's log/die and its option variables (expdir, datadir, dumpdir,
# speakers, python, cuda_cmd, ngpu, num_nodes, train_nj, and train_pse's: train_conf_dir,
# *_config, generalist_noise, generalist_talkers, inference_model, pse_args; run_stage's stage,
# stop_stage, last_stage and main's stages_* lists).

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
    esac
    log "Stage ${n}/${last_stage} (${name}): ${stage_result} ($((SECONDS - t0)) s)"
    current_stage=""
}

# on_exit: the EXIT trap; names the stage that failed.
on_exit() {
    local rc=$?
    if [ "${rc}" -ne 0 ] && [ -n "${current_stage:-}" ]; then
        log "Stage ${current_stage}: FAILED (exit code ${rc})"
    fi
}

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

# install_packed_model ZIP EXP_DIR: a packed model's config and checkpoint as a trained EXP_DIR
# (config.yaml, ${inference_model}, .done naming the zip), so that later stages use it as if
# trained here; redone when EXP_DIR came from another zip or was trained.
install_packed_model() {
    local zip exp=$2
    zip=$(realpath "$1")
    if [ -f "${exp}/.done" ] && [ "$(cat "${exp}/.done")" = "packed ${zip}" ]; then
        log "  ${exp}: already installed from ${zip}; skipping"
        return 0
    fi
    log "  ${exp}: the packed model ${zip}, not trained here"
    rm -rf "${exp}"
    mkdir -p "${exp}"
    ${python} - "${zip}" "${exp}" "${inference_model}" <<'PY' || die "cannot install ${zip} as ${exp}"
import shutil, sys, tempfile
from pathlib import Path
from espnet2_pse.inference.model_loading import resolve_model
zip_path, exp, checkpoint = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
with tempfile.TemporaryDirectory() as tmp:
    files = resolve_model(zip_path, Path(tmp))
    shutil.copyfile(files.train_config, exp / "config.yaml")
    shutil.copyfile(files.model_file, exp / checkpoint)
PY
    echo "packed ${zip}" >"${exp}/.done"
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

# pool_run CMD...: runs CMD in the background, at most --train_nj at a time; pool_wait waits
# for all of them and stops pse.sh if any failed (each training's log names the error).
pool_pids=()
pool_run() {
    while [ "$(jobs -rp | wc -l)" -ge "${train_nj}" ]; do sleep 1; done
    "$@" &
    pool_pids+=($!)
}
pool_wait() {
    local pid failed=0
    for pid in "${pool_pids[@]}"; do wait "${pid}" || failed=$((failed + 1)); done
    pool_pids=()
    [ "${failed}" -eq 0 ] || die "${failed} training run(s) failed; see the train.log files named above"
}

# compose_config OUT FILE...: one ESPnet config from parts with disjoint top-level keys
# (model size, training schedule, method), so each part stays one YAML edit away.
compose_config() {
    local out=$1 dup
    shift
    dup=$(grep -hoE '^[A-Za-z_0-9]+:' "$@" | sort | uniq -d | tr '\n' ' ')
    [ -z "${dup}" ] || die "config parts $* repeat top-level keys: ${dup}"
    mkdir -p "$(dirname "${out}")"
    for f in "$@"; do printf '# ---- %s\n' "${f}"; cat "${f}"; echo; done >"${out}.tmp"
    mv "${out}.tmp" "${out}"
}

# Target speakers: --speakers, or every target of the data's roles.yaml.
target_speakers() {
    if [ -n "${speakers}" ]; then echo "${speakers}"; return; fi
    ${python} -c "import sys, yaml; print(' '.join(yaml.safe_load(open(sys.argv[1]))['target']))" \
        "${dumpdir}/roles.yaml"
}

# Whether the speaker's SSL pool is clean corpus speech (premixture added on the fly).
needs_premix() {
    ${python} -c "import sys, yaml; print('false' if yaml.safe_load(open(sys.argv[1])).get('premixed') else 'true')" \
        "${dumpdir}/speakers/$1/meta.yaml"
}

# noise_scp_list BANK...: the banks' wav.scp files (data/noise/BANK) as one YAML list, as
# the objectives' inject_noise_scp takes it; dies naming a bank that is missing.
noise_scp_list() {
    local bank scps=()
    for bank in "$@"; do
        [ -f "${datadir}/noise/${bank}/wav.scp" ] || die "noise bank ${bank}: no ${datadir}/noise/${bank}/wav.scp"
        scps+=("${PWD}/${datadir}/noise/${bank}/wav.scp")
    done
    echo "[$(IFS=,; echo "${scps[*]}")]"
}

# train_pse EXP ROLE SIZE METHOD TRAIN_DIR VALID_DIR PREMIX [ARGS...]: one pse_train run.
# ROLE (ssl, fsl, generalist, conditioned) picks the schedule ${train_conf_dir}/train_ROLE.yaml
# or the option that overrides it (--pse_config, --generalist_config, --conditioned_config;
# conditioned falls back to the generalist's); METHOD conf/method/METHOD.yaml; PREMIX=true adds
# the premixture bank (clean corpus speech), false keeps the speech as it is. Generalists
# (plain and conditioned) train on --generalist_noise's banks and, with --generalist_talkers P,
# get another training voice as an interfering talker in a share P of their inputs, never the
# example's own (the talker bank's utt2spk against the data dir's utt2spk_index).
train_pse() {
    local exp=$1 role=$2 size=$3 method=$4 train=$5 valid=$6 premix=$7 schedule
    shift 7
    case "${role}" in
        ssl) schedule=${pse_config:-${train_conf_dir}/train_ssl.yaml} ;;
        generalist) schedule=${generalist_config:-${train_conf_dir}/train_generalist.yaml} ;;
        conditioned) schedule=${conditioned_config:-${generalist_config:-${train_conf_dir}/train_generalist.yaml}} ;;
        *) schedule=${train_conf_dir}/train_${role}.yaml ;;
    esac
    compose_config "${exp}/pse_config.yaml" "conf/model/${size}.yaml" "${schedule}" "conf/method/${method}.yaml"
    local banks=inject_train scps data=()
    [[ " generalist conditioned " == *" ${role} "* ]] && banks=${generalist_noise}
    # shellcheck disable=SC2086  # one word per bank
    scps=$(noise_scp_list ${banks}) || exit 1
    local objective=(--ssl_objective_conf "inject_noise_scp=${scps}")
    [ "${premix}" = true ] && objective+=(--ssl_objective_conf "premix_noise_scp=${PWD}/${datadir}/noise/premix_train/wav.scp")
    if [[ "${method}" == *_dp ]]; then
        objective+=(--ssl_objective_conf "dp_predictor.config=${PWD}/${expdir}/snr_predictor/config.yaml"
                    --ssl_objective_conf "dp_predictor.model_file=${PWD}/${expdir}/snr_predictor/${inference_model}")
    fi
    if [[ " generalist conditioned " == *" ${role} "* ]] && [ "${generalist_talkers}" != 0 ]; then
        [ -f "${train}/utt2spk_index" ] || die "${train}/utt2spk_index is missing (written by stage 2):" \
            "rerun stage 2 after removing ${train}/.done"
        objective+=(--ssl_objective_conf "talker_scp=${PWD}/${train}/spk1.scp"
                    --ssl_objective_conf "talker_utt2spk=${PWD}/${train}/utt2spk"
                    --ssl_objective_conf "talker_prob=${generalist_talkers}")
        data=(--train_data_path_and_name_and_type "${train}/utt2spk_index,spk_index,text_int"
              --chunk_excluded_key_prefixes enroll_ref spk_index)
    fi
    # shellcheck disable=SC2086  # pse_args is split into words on purpose
    launch_train "${exp}" espnet2_pse.bin.pse_train --config "${exp}/pse_config.yaml" \
        --train_data_path_and_name_and_type "${train}/spk1.scp,speech_ref1,sound" \
        --train_shape_file "${train}/speech_shape" \
        --valid_data_path_and_name_and_type "${valid}/wav.scp,speech_mix,sound" \
        --valid_data_path_and_name_and_type "${valid}/spk1.scp,speech_ref1,sound" \
        --valid_shape_file "${valid}/speech_shape" "${objective[@]}" "${data[@]}" "$@" ${pse_args}
}
