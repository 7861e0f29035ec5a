# Speaker-encoder steps of pse.sh (issue 5), sourced by it: the teacher speaker model, the
# distilled student, their EERs, the teacher's enrollment embeddings (stage 3), and stage 7's
# refinement configs and cost count. They use pse.sh's options (expdir, dumpdir, datadir,
# python, sizes, inference_model, spk_teacher_*, spk_student_config, refine_config,
# enroll_seconds, short_enroll_seconds) and its helpers (log, die, launch_train, pool_run,
# compose_config, target_speakers).

# The pretrained teacher's tag (--spk_teacher_tag, or resemblyzer); empty for the in-recipe ECAPA.
pretrained_teacher() {
    if [ -n "${spk_teacher_tag}" ]; then
        echo "${spk_teacher_tag}"
    elif [ "${spk_teacher}" = resemblyzer ]; then
        echo resemblyzer
    fi
}

# spk_dim_args CONF: the option that sizes a model's speaker embedding (CONF: student_conf or
# separator_conf) to the teacher's, where it differs from the configs' 192 (GE2E: 256).
spk_dim_args() {
    [ "$(pretrained_teacher)" = resemblyzer ] && echo "--$1 embed_dim=256"
    return 0
}

# Teacher of the student and of the enrollment embeddings: trained in-recipe or pretrained.
spk_teacher_args() {
    local tag
    tag=$(pretrained_teacher)
    if [ -n "${tag}" ]; then echo "--model_tag ${tag}"; return; fi
    echo "--train_config ${PWD}/${expdir}/spk_teacher/config.yaml --model_file ${PWD}/${expdir}/spk_teacher/valid.eer.best.pth"
}

train_spk_teacher() {
    local train=${dumpdir}/generalist/train trials=${dumpdir}/spk/valid_trials
    launch_train "${expdir}/spk_teacher" espnet2_pse.bin.spk_train --config "${spk_teacher_config}" \
        --spk_num "$(wc -l <"${train}/spk2utt")" --spk2utt "${train}/spk2utt" \
        --train_data_path_and_name_and_type "${train}/wav.scp,speech,sound" \
        --train_data_path_and_name_and_type "${train}/utt2spk,spk_labels,text" \
        --train_shape_file "${train}/speech_shape" \
        --valid_data_path_and_name_and_type "${trials}/trial.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${trials}/trial2.scp,speech2,sound" \
        --valid_data_path_and_name_and_type "${trials}/trial_label,spk_labels,text" \
        --valid_shape_file "${trials}/speech_shape"
}

# remove_older_than MODEL FILE...: deletes the FILEs older than MODEL, so that results of a
# retrained teacher or student are redone instead of kept.
remove_older_than() {
    local model=$1 f
    shift
    [ -e "${model}" ] || return 0
    for f in "$@"; do [ ! -e "${f}" ] || [ "${f}" -nt "${model}" ] || rm -f "${f}"; done
}

# spk_eer NAME MODEL_TYPE MAX_SECONDS MODEL_ARGS [NOISE]: one EER into <expdir>/spk_eval/NAME.yaml.
spk_eer() {
    local out=${expdir}/spk_eval/$1.yaml noise=()
    [ -f "${out}" ] && return 0
    [ -n "${5:-}" ] && noise=(--noise_scp "$5" --snr_low 0 --snr_high 10)
    # shellcheck disable=SC2086  # the model options are split into words on purpose
    ${python} -m espnet2_pse.bin.spk_eer --model_type "$2" --max_seconds "$3" $4 "${noise[@]}" \
        --data_dir "${dumpdir}/spk/eval" --trials "${dumpdir}/spk/eval/trials" --output_file "${out}" \
        >"${expdir}/spk_eval/$1.log" 2>&1 || die "EER $1 failed: see ${expdir}/spk_eval/$1.log"
}

# Student distillation, EERs of teacher and student (clean and noisy; the student also on the
# refinement window), and the teacher's enrollment embeddings for stages 4 and 7.
stage_3_speaker_encoders() {
    local train=${dumpdir}/generalist/train valid=${dumpdir}/spk/valid spk cond window
    # shellcheck disable=SC2046  # spk_teacher_args gives several words
    launch_train "${expdir}/spk_student" espnet2_pse.bin.spk_distill_train --config "${spk_student_config}" \
        $(spk_teacher_args | sed -E 's/--(train_config|model_file|model_tag)/--teacher_\1/g') \
        $(spk_dim_args student_conf) \
        --noise_scp "${PWD}/${datadir}/noise/inject_train/wav.scp" \
        --train_data_path_and_name_and_type "${train}/wav.scp,speech,sound" \
        --train_data_path_and_name_and_type "${train}/utt2spk,spk_labels,text" \
        --train_shape_file "${train}/speech_shape" \
        --valid_data_path_and_name_and_type "${valid}/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${valid}/utt2spk,spk_labels,text" \
        --valid_shape_file "${valid}/speech_shape"
    mkdir -p "${expdir}/spk_eval"
    remove_older_than "${expdir}/spk_teacher/valid.eer.best.pth" "${expdir}"/spk_eval/teacher_*.yaml \
        "${expdir}/done_markers/stage3_enroll"
    remove_older_than "${expdir}/spk_student/${inference_model}" "${expdir}"/spk_eval/student_*.yaml
    local student="--train_config ${expdir}/spk_student/config.yaml --model_file ${expdir}/spk_student/${inference_model}"
    local noise
    window=$(${python} -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['window_s'])" "${refine_config}")
    log "  speaker-verification EERs on ${dumpdir}/spk/eval (logs: ${expdir}/spk_eval)"
    for cond in clean noisy; do
        noise=""
        [ "${cond}" = noisy ] && noise=${PWD}/${datadir}/noise/test/wav.scp
        pool_run spk_eer "teacher_${cond}" teacher 0 "$(spk_teacher_args)" "${noise}"
        pool_run spk_eer "student_${cond}" student 0 "${student}" "${noise}"
        pool_run spk_eer "student_${window}s_${cond}" student "${window}" "${student}" "${noise}"
    done
    pool_wait
    if ! stage_done stage3_enroll "${enroll_seconds} ${short_enroll_seconds}"; then
        log "  teacher embeddings: enrollment of the conditioned generalists and of the target speakers"
        local speaker_dirs=()  # not "speakers": that is pse.sh's --speakers option
        for spk in $(target_speakers); do speaker_dirs+=(--speaker_dir "${dumpdir}/speakers/${spk}"); done
        # shellcheck disable=SC2046
        ${python} -m espnet2_pse.bin.spk_enroll $(spk_teacher_args) --out_dir "${expdir}/enroll" \
            --pool "train=${train}" --pool "valid=${dumpdir}/generalist/valid" "${speaker_dirs[@]}" \
            --noise_scp "${PWD}/${datadir}/noise/inject_val/wav.scp" \
            --enroll_seconds "${enroll_seconds}" --short_enroll_seconds "${short_enroll_seconds}"
        mark_done stage3_enroll "${enroll_seconds} ${short_enroll_seconds}"
    fi
}

# Parameters and MACs/s of student, teacher and the PSE models -> <expdir>/spk_eval/cost.yaml.
spk_cost() {
    local size models=()
    for size in ${sizes}; do
        models+=(--pse "generalist_${size}=${expdir}/generalist_${size}/model/config.yaml"
                 --pse "conditioned_${size}=${expdir}/conditioned_${size}/model/config.yaml")
    done
    [ -z "$(pretrained_teacher)" ] && models+=(--teacher_config "${expdir}/spk_teacher/config.yaml")
    ${python} -m espnet2_pse.bin.spk_cost --student_config "${expdir}/spk_student/config.yaml" \
        --refine_config "${refine_config}" "${models[@]}" --out "${expdir}/spk_eval/cost.yaml" \
        >"${expdir}/spk_eval/cost.log" 2>&1 || die "cost count failed: see ${expdir}/spk_eval/cost.log"
}

# The evaluate jobs' refinement configs in <expdir>/spk_student: refine.yaml (--refine_config +
# the student's files), refine_e0.yaml (the same hop loop with e_0 alone: alpha 1) and
# refine_input.yaml (the student embeds the mixture: input-side ablation).
write_refine_configs() {
    local dir=${expdir}/spk_student
    printf 'student_config: %s\nstudent_model: %s\n' "${dir}/config.yaml" "${dir}/${inference_model}" \
        >"${dir}/student.yaml"
    compose_config "${dir}/refine.yaml" "${refine_config}" "${dir}/student.yaml"
    sed -E 's/^alpha:.*/alpha: 1.0/' "${dir}/refine.yaml" >"${dir}/refine_e0.yaml"
    { sed -E '/^source:/d' "${dir}/refine.yaml"; echo "source: mixture"; } >"${dir}/refine_input.yaml"
}

# key=file pairs packed with a conditioned model (stage 8): the student, and the teacher when it
# was trained here; a pretrained one is named by its tag (spk_teacher_tag.yaml), which enhance uses.
spk_pack_extras() {
    local tag
    tag=$(pretrained_teacher)
    echo -n "spk_student_config=${expdir}/spk_student/config.yaml"
    echo -n " spk_student_model=${expdir}/spk_student/${inference_model}"
    if [ -n "${tag}" ]; then
        echo "model_tag: ${tag}" >"${expdir}/spk_teacher_tag.yaml"
        echo -n " spk_teacher_tag=${expdir}/spk_teacher_tag.yaml"
    else
        echo -n " spk_teacher_config=${expdir}/spk_teacher/config.yaml" \
            "spk_teacher_model=${expdir}/spk_teacher/valid.eer.best.pth"
    fi
    echo
}
