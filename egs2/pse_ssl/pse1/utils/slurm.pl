#!/usr/bin/env bash
# Slurm job runner for the recipe (written for espnet2_pse; a bash script despite its name,
# because espnet2.bin.launch switches to `srun` for multi-node training when the runner's
# basename is slurm.pl).
#
#   slurm.pl [options] [JOB=1:N] <log> <command...>
#
# Same interface and log format as utils/run.pl, but the work runs on the cluster: it writes
# a batch script to <logdir>/q/, submits it with `sbatch --wait` (an array job for JOB=A:B)
# and returns when every task has finished. Inside each task, run.pl runs the command, so
# quoting, JOB substitution and the log header/accounting are identical to local runs.
# Exits 1 and names the failed logs when any task fails; an interrupt cancels the job.
#
# Options (dash or underscore spelling):
#   --config FILE      sbatch settings (default: conf/slurm.conf when it exists)
#   --gpu N            GPUs per node: uses gpu_partition and gpu_opts from the config
#   --num_threads N    --cpus-per-task
#   --num_nodes N      --nodes N --ntasks-per-node 1 (the command starts its own srun)
#   --mem X            --mem X (per node), otherwise the config's default_mem
#   --time T           --time T, otherwise the config's default_time
#   --name NAME        --job-name (default: the log's file name)
#   --max_jobs_run N   at most N array tasks at once (--array A-B%N)
set -uo pipefail

prog=${0##*/}
die() {
    echo "${prog}: $*" >&2
    exit 1
}
usage() {
    sed -n '6,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 1
}

config=""
gpu=0
num_threads=1
num_nodes=1
mem=""
time_limit=""
name=""
max_jobs_run=""
while [ $# -gt 0 ]; do
    case "$1" in
        --*=*) opt=${1%%=*}; val=${1#*=}; shift ;;
        --*) opt=$1; [ $# -ge 2 ] || die "option $1 needs a value"; val=$2; shift 2 ;;
        *) break ;;
    esac
    opt=${opt#--}
    case "${opt//-/_}" in
        config) config=${val} ;;
        gpu) gpu=${val} ;;
        num_threads) num_threads=${val} ;;
        num_nodes) num_nodes=${val} ;;
        mem) mem=${val} ;;
        time) time_limit=${val} ;;
        name) name=${val} ;;
        max_jobs_run) max_jobs_run=${val} ;;
        *) die "unknown option --${opt}" ;;
    esac
done
for pair in "gpu:${gpu}" "num_threads:${num_threads}" "num_nodes:${num_nodes}"; do
    [[ "${pair#*:}" =~ ^[0-9]+$ ]] || die "--${pair%%:*} must be a non-negative integer, got '${pair#*:}'"
done

# Settings from the config file (bash syntax, see conf/slurm.conf); empty means "not passed".
partition=""
gpu_partition=""
gpu_opts="--gres=gpu:{gpu}"
default_mem=""
default_time=""
extra_opts=""
if [ -z "${config}" ] && [ -f conf/slurm.conf ]; then
    config=conf/slurm.conf
fi
if [ -n "${config}" ]; then
    [ -f "${config}" ] || die "config file not found: ${config}"
    # shellcheck disable=SC1090
    . "${config}" || die "could not read config file: ${config}"
fi

# shellcheck source=job_range.sh
. "$(dirname "$0")/job_range.sh"
if parse_job_range "${1:-}"; then shift; fi
[ $# -ge 2 ] || usage
log=$1
shift
check_job_log "${log}" tasks
command -v sbatch >/dev/null 2>&1 || die "sbatch not found on PATH: run on a Slurm login node, or use cmd_backend=local (run.pl)"

runner="$(cd "$(dirname "$0")" && pwd)/run.pl"
[ -x "${runner}" ] || die "missing ${runner} (slurm.pl runs each task through it)"

logdir=$(dirname "${log}")
qname=$(basename "${log}")
[ -n "${jobvar}" ] && qname=${qname//${jobvar}/all}
qname=${qname%.log}
qdir=${logdir}/q
mkdir -p "${qdir}" || die "cannot create ${qdir}"
[ -n "${name}" ] || name=${qname}

# The batch script: run.pl runs the task's command and writes its log; the status file
# tells this script which tasks failed even when Slurm only reports the worst code.
script=${qdir}/${qname}.sh
{
    echo "#!/usr/bin/env bash"
    echo "# Written by ${prog} at $(date '+%F %T'); submitted with sbatch."
    printf 'cd %q || exit 1\n' "${PWD}"
    echo "task=\${SLURM_ARRAY_TASK_ID:-${first}}"
    printf '%q --num_threads %q ' "${runner}" "${num_threads}"
    # jobvar is a plain identifier, so it needs no quoting; ${task} expands in the task.
    [ -n "${jobvar}" ] && printf '%s=${task} ' "${jobvar}"
    printf '%q ' "${log}" "$@"
    echo
    echo "rc=\$?"
    printf 'echo "${rc}" >%q.status."${task}"\n' "${qdir}/${qname}"
    echo "exit \${rc}"
} >"${script}.tmp" && mv "${script}.tmp" "${script}" || die "cannot write ${script}"
chmod +x "${script}"

sbatch_opts=(--parsable --wait --export=ALL "--job-name=${name}" "--cpus-per-task=${num_threads}")
if [ -n "${jobvar}" ]; then
    sbatch_opts+=("--array=${first}-${last}${max_jobs_run:+%${max_jobs_run}}" "--output=${qdir}/${qname}.%a.out")
else
    sbatch_opts+=("--output=${qdir}/${qname}.out")
fi
if [ "${gpu}" -gt 0 ]; then
    [ -n "${gpu_partition}" ] && sbatch_opts+=("--partition=${gpu_partition}")
    # shellcheck disable=SC2206  # gpu_opts may hold several options
    sbatch_opts+=(${gpu_opts//\{gpu\}/${gpu}})
else
    [ -n "${partition}" ] && sbatch_opts+=("--partition=${partition}")
fi
[ "${num_nodes}" -gt 1 ] && sbatch_opts+=("--nodes=${num_nodes}" "--ntasks-per-node=1")
mem=${mem:-${default_mem}}
[ -n "${mem}" ] && sbatch_opts+=("--mem=${mem}")
time_limit=${time_limit:-${default_time}}
[ -n "${time_limit}" ] && sbatch_opts+=("--time=${time_limit}")
# shellcheck disable=SC2206  # extra_opts is a list of options
[ -n "${extra_opts}" ] && sbatch_opts+=(${extra_opts})

rm -f "${qdir}/${qname}".status.*
jobid_file=${qdir}/${qname}.jobid
cancel_job() {
    local id
    id=$(head -n 1 "${jobid_file}" 2>/dev/null | cut -d';' -f1)
    [ -n "${id}" ] && scancel "${id}" 2>/dev/null && echo "${prog}: cancelled Slurm job ${id}" >&2
    exit 130
}
trap cancel_job INT TERM HUP
printf '%q ' sbatch "${sbatch_opts[@]}" "${script}" >"${qdir}/${qname}.sbatch_cmd"
echo >>"${qdir}/${qname}.sbatch_cmd"
sbatch "${sbatch_opts[@]}" "${script}" >"${jobid_file}" &
wait $!
sbatch_rc=$?
trap - INT TERM HUP

failed=()
for ((id = first; id <= last; id++)); do
    rc=$(cat "${qdir}/${qname}.status.${id}" 2>/dev/null || echo "none")
    [ "${rc}" = 0 ] && continue
    logf=${log}
    [ -n "${jobvar}" ] && logf=${log//${jobvar}/${id}}
    if [ "${rc}" = none ]; then
        out=${qdir}/${qname}.out
        [ -n "${jobvar}" ] && out=${qdir}/${qname}.${id}.out
        failed+=("${logf} (task did not finish; Slurm output: ${out})")
    else
        failed+=("${logf} (exit code ${rc})")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "${prog}: ${#failed[@]} of $((last - first + 1)) task(s) failed; see:" >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
[ "${sbatch_rc}" -eq 0 ] || die "sbatch exited with code ${sbatch_rc}; see ${qdir}/${qname}*.out"
exit 0
