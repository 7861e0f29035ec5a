# Option checks of pse.sh (sourced by it): setup() refuses bad options before any stage runs,
# naming the option, then sources path.sh and cmd.sh. It reads pse.sh's option variables and
# uses its die.

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
    for name in ngpu num_nodes nj train_nj inference_nj; do
        value=${!name}
        [[ "${value}" =~ ^[0-9]+$ ]] || die "--${name} must be a non-negative integer, got '${value}'"
    done
    for name in num_nodes nj train_nj inference_nj; do
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
    for name in generalist_config conditioned_config; do
        [ -z "${!name}" ] || [ -f "${!name}" ] || die "--${name}: file not found: ${!name}"
    done
    if [ -n "${generalist_model}" ]; then
        [[ "${generalist_model}" == *.zip ]] && [ -f "${generalist_model}" ] \
            || die "--generalist_model must be a packed model (.zip); not found: ${generalist_model}"
        [ "$(wc -w <<<"${sizes}")" -eq 1 ] || die "--generalist_model stands for one size; --sizes is '${sizes}'"
    fi
    [[ "${generalist_talkers}" =~ ^(0([.][0-9]+)?|1([.]0+)?)$ ]] \
        || die "--generalist_talkers must be a share between 0 and 1, got '${generalist_talkers}'"
    for value in ${generalist_speed_perturb}; do
        [[ "${value}" =~ ^[0-9]*[.]?[0-9]+$ ]] && [[ ! "${value}" =~ ^0*([.]0+)?$ ]] && [[ ! "${value}" =~ ^0*1([.]0+)?$ ]] \
            || die "--generalist_speed_perturb: '${value}' is not a speed factor (positive, other than 1)"
    done
    [ -z "${conditioned_init}" ] || [ "${conditioned_init}" = generalist ] || [ -f "${conditioned_init}" ] \
        || die "--conditioned_init must be empty, 'generalist' or a checkpoint file; not found: ${conditioned_init}"
    if [ "${skip_upload_hf}" = false ] && [ -z "${hf_repo}" ]; then
        die "--skip_upload_hf false needs --hf_repo user/name"
    fi
    if [ "${num_nodes}" -gt 1 ] && [ "${cmd_backend}" = local ]; then
        die "--num_nodes ${num_nodes} needs a cluster: add --cmd_backend slurm (run.pl runs on this machine only)"
    fi
    [[ " ecapa resemblyzer " == *" ${spk_teacher} "* ]] || die "--spk_teacher must be ecapa or resemblyzer, got '${spk_teacher}'"
    if [ "${spk_encoder}" = true ]; then  # each config is checked when its stage is to run
        for name in 3:spk_teacher_config 3:spk_student_config 7:refine_config; do
            value=${name#*:}
            [ "${stage}" -le "${name%%:*}" ] && [ "${stop_stage}" -ge "${name%%:*}" ] || continue
            [ -f "${!value}" ] || die "--${value}: file not found: ${!value}"
        done
    fi
    # shellcheck disable=SC1091
    . ./path.sh
    # shellcheck disable=SC1091
    . ./cmd.sh
}
