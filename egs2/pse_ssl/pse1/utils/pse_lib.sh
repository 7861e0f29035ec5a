# Generic helpers of pse.sh (sourced by it): done markers, training launch, a job pool,
# config composition and data lookups (target speakers, noise banks). They use pse.sh's
# log/die and its option variables (expdir, datadir, dumpdir, speakers, python, cuda_cmd,
# ngpu, num_nodes, train_nj).

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
