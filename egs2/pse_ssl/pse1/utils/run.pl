#!/usr/bin/env bash
# Local job runner for the recipe (written for espnet2_pse; a bash script despite its name,
# because espnet2.bin.launch decides how to start multi-node jobs from the runner's basename).
#
#   run.pl [options] [JOB=1:N] <log> <command...>
#
# Runs <command> on this machine with stdout and stderr going to <log>. With JOB=A:B (any
# variable name works, e.g. SPLIT=1:4) it runs one job per index,
# at most --max_jobs_run at a time, replacing the variable name by the index in <log> and in
# the command. Each log starts with the command and ends with an accounting block (exit
# code, elapsed seconds). Exits 1 and names the failed logs when any job fails.
#
# Arguments without white space reach the shell as they are, so "|" and ">" work as shell
# syntax; arguments containing white space are quoted and stay one word.
#
# Options (dash or underscore spelling):
#   --gpu N            accepted for interface compatibility (jobs see every local device)
#   --num_threads N    recorded in the accounting line
#   --mem X            accepted and ignored locally
#   --time T           accepted and ignored locally
#   --name NAME        accepted and ignored locally (slurm.pl uses it as the job name)
#   --num_nodes N      must be 1: use slurm.pl for several machines
#   --max_jobs_run N   parallel jobs for arrays (default: number of CPU cores)
set -uo pipefail

prog=${0##*/}
die() {
    echo "${prog}: $*" >&2
    exit 1
}
usage() {
    sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 1
}

num_threads=1
num_nodes=1
max_jobs_run=$(nproc 2>/dev/null || echo 1)
while [ $# -gt 0 ]; do
    case "$1" in
        --*=*) opt=${1%%=*}; val=${1#*=}; shift ;;
        --*) opt=$1; [ $# -ge 2 ] || die "option $1 needs a value"; val=$2; shift 2 ;;
        *) break ;;
    esac
    opt=${opt#--}
    case "${opt//-/_}" in
        gpu | mem | time | name) ;;
        num_threads) num_threads=${val} ;;
        num_nodes) num_nodes=${val} ;;
        max_jobs_run) max_jobs_run=${val} ;;
        *) die "unknown option --${opt}" ;;
    esac
done
[[ "${max_jobs_run}" =~ ^[1-9][0-9]*$ ]] || die "--max_jobs_run must be a positive integer, got '${max_jobs_run}'"
[ "${num_nodes}" = 1 ] || die "runs jobs on this machine only (--num_nodes ${num_nodes}); use slurm.pl for several nodes"

# shellcheck source=job_range.sh
. "$(dirname "$0")/job_range.sh"
if parse_job_range "${1:-}"; then shift; fi
[ $# -ge 2 ] || usage
log=$1
shift
check_job_log "${log}" jobs

# Builds the shell command for one job index.
command_for() {
    local id=$1 arg out=""
    for arg in "${@:2}"; do
        [ -n "${jobvar}" ] && arg=${arg//${jobvar}/${id}}
        if [[ -n "${arg}" && "${arg}" != *[[:space:]]* ]]; then
            out+="${arg} "
        else
            out+="$(printf '%q' "${arg}") "
        fi
    done
    printf '%s' "${out% }"
}

statusdir=$(mktemp -d "${TMPDIR:-/tmp}/run_pl.XXXXXX") || die "cannot create a temporary directory"

# One job: writes the log header, runs the command, appends the accounting, records the code.
run_job() {
    local id=$1 logf cmd start rc elapsed
    logf=${log}
    [ -n "${jobvar}" ] && logf=${log//${jobvar}/${id}}
    cmd=$(command_for "${id}" "${@:2}")
    mkdir -p "$(dirname "${logf}")" 2>/dev/null
    if ! { printf '# %s\n# Started at %s on %s\n' "${cmd}" "$(date '+%F %T')" "$(hostname)" >"${logf}"; } 2>/dev/null; then
        echo "${prog}: cannot write log file ${logf}" >&2
        echo 1 >"${statusdir}/${id}"
        return
    fi
    start=$(date +%s)
    bash -o pipefail -c "${cmd}" </dev/null >>"${logf}" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - start))
    # Output without a final newline would run into the accounting line.
    [ -z "$(tail -c 1 "${logf}")" ] || echo >>"${logf}"
    printf '# Accounting: exit_code=%d elapsed=%ds threads=%s\n# Ended at %s (exit code %d, %d seconds)\n' \
        "${rc}" "${elapsed}" "${num_threads}" "$(date '+%F %T')" "${rc}" "${elapsed}" >>"${logf}"
    echo "${rc}" >"${statusdir}/${id}"
}

# Each job gets its own process group (set -m) so that an interrupt stops whole jobs.
set -m
pids=()
stop_jobs() {
    local pid
    set +m # no job-status notices for the jobs stopped here
    for pid in "${pids[@]}"; do kill -TERM -- "-${pid}" 2>/dev/null; done
    rm -rf "${statusdir}"
    echo "${prog}: interrupted; stopped the running jobs" >&2
    exit 130
}
trap stop_jobs INT TERM HUP

for ((id = first; id <= last; id++)); do
    while [ "$(jobs -rp | wc -l)" -ge "${max_jobs_run}" ]; do wait -n; done
    run_job "${id}" "$@" &
    pids+=($!)
done
wait
trap - INT TERM HUP

failed=()
for ((id = first; id <= last; id++)); do
    rc=$(cat "${statusdir}/${id}" 2>/dev/null || echo 1)
    [ "${rc}" = 0 ] && continue
    logf=${log}
    [ -n "${jobvar}" ] && logf=${log//${jobvar}/${id}}
    failed+=("${logf} (exit code ${rc})")
done
rm -rf "${statusdir}"

if [ ${#failed[@]} -gt 0 ]; then
    total=$((last - first + 1))
    echo "${prog}: ${#failed[@]} of ${total} job(s) failed; see:" >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
exit 0
