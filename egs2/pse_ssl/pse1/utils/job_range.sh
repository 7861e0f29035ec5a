# Job-array argument handling shared by run.pl and slurm.pl (sourced; uses the caller's die).
#
# parse_job_range ARG: when ARG is NAME=A or NAME=A:B, sets jobvar=NAME, first=A, last=B and
# succeeds; otherwise leaves jobvar empty and first=last=1 and fails (ARG is not a range).
parse_job_range() {
    jobvar=""
    first=1
    last=1
    [[ "${1:-}" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+)(:([0-9]+))?$ ]] || return 1
    jobvar=${BASH_REMATCH[1]}
    first=${BASH_REMATCH[2]}
    last=${BASH_REMATCH[4]:-${first}}
    [ "${first}" -le "${last}" ] || die "empty job range $1"
}

# check_job_log LOG WHAT: several jobs must not share one log file.
check_job_log() {
    if [ -n "${jobvar}" ] && [[ "$1" != *"${jobvar}"* ]] && [ "${first}" != "${last}" ]; then
        die "log name '$1' must contain ${jobvar} so that the ${jobvar}=${first}:${last} $2 do not share one log"
    fi
}
