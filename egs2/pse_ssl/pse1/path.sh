# Environment for the recipe: source it from the recipe directory (pse.sh does).
# Activates the repository's tools/venv, building it first with `make -C tools` when it is
# missing, and puts the recipe's utils/ on PATH.
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAIN_ROOT=$(cd "${RECIPE_DIR}/../../.." && pwd)
export MAIN_ROOT

if [ ! -f "${MAIN_ROOT}/tools/venv/bin/activate" ]; then
    echo "path.sh: ${MAIN_ROOT}/tools/venv is missing; building it with 'make -C ${MAIN_ROOT}/tools'" >&2
    make -C "${MAIN_ROOT}/tools" >&2 || {
        echo "path.sh: building the environment failed; see the messages above (tools/Makefile)" >&2
        return 1 2>/dev/null || exit 1
    }
fi
# shellcheck disable=SC1091
. "${MAIN_ROOT}/tools/venv/bin/activate"

export PATH=${RECIPE_DIR}/utils:${PATH}
# One thread per process by default: parallelism comes from run.pl jobs and DDP ranks
# (PSE_NUM_THREADS=2 ./run.sh ... gives a single job both cores of a 2-core machine).
export OMP_NUM_THREADS=${PSE_NUM_THREADS:-1}
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
