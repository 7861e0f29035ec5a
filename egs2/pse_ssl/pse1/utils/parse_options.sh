# Command-line option parser for the recipe scripts (written for espnet2_pse).
#
# Source it after the script has given every option a default value:
#
#     stage=1
#     stop_stage=8
#     help_message="Usage: $0 [options] <arg>"
#     . utils/parse_options.sh
#
# Accepted forms (dashes in a name become underscores, so --stop-stage sets stop_stage):
#     --name value    --name=value    --config FILE    --config=FILE    --help | -h    --
# Only names the script has already defined are accepted; anything else is an error that
# names the option. Read-only variables are the script's fixed settings and are refused too.
# A variable whose default is true/false only takes true or false.
# --config files hold name=value lines and are sourced before the other options are applied,
# so an option given on the command line always wins over the file, wherever it appears.
# Parsing stops at the first argument that is not an option (or after "--"); the rest stays
# in "$@" for the script.

_po_die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

# Pass 1: source every --config file, in order.
_po_args=("$@")
_po_i=0
while [ "${_po_i}" -lt "${#_po_args[@]}" ]; do
    _po_arg=${_po_args[${_po_i}]}
    case "${_po_arg}" in
        --) break ;;
        --config=*) _po_file=${_po_arg#--config=} ;;
        --config)
            [ $((_po_i + 1)) -lt "${#_po_args[@]}" ] || _po_die "option --config needs a file name"
            _po_file=${_po_args[$((_po_i + 1))]}
            _po_i=$((_po_i + 1))
            ;;
        --*=* | -h | --help)
            _po_i=$((_po_i + 1))
            continue
            ;;
        --*)
            _po_i=$((_po_i + 2)) # the option and its value
            continue
            ;;
        *) break ;;
    esac
    [ -f "${_po_file}" ] || _po_die "config file not found: ${_po_file} (from --config)"
    # shellcheck disable=SC1090
    . "${_po_file}" || _po_die "could not source config file: ${_po_file}"
    _po_i=$((_po_i + 1))
done

# Pass 2: apply the options, skipping the --config ones already handled.
while [ $# -gt 0 ]; do
    case "$1" in
        --help | -h)
            if [ -n "${help_message:-}" ]; then
                printf '%s\n' "${help_message}"
            else
                echo "Usage: ${0##*/} [--option value ...] (no help text was defined)"
            fi
            exit 0
            ;;
        --)
            shift
            break
            ;;
        --config=*)
            shift
            continue
            ;;
        --config)
            shift 2
            continue
            ;;
        --*=*)
            _po_name=${1%%=*}
            _po_value=${1#*=}
            shift
            ;;
        --*)
            _po_name=$1
            [ $# -ge 2 ] || _po_die "option ${_po_name} needs a value"
            _po_value=$2
            shift 2
            ;;
        *)
            break
            ;;
    esac
    _po_var=${_po_name#--}
    _po_var=${_po_var//-/_}
    [[ "${_po_var}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] \
        || _po_die "invalid option name: ${_po_name}"
    # ${!var+x} is empty when the script never defined the variable.
    [ -n "${!_po_var+x}" ] || _po_die "unknown option ${_po_name} (see --help)"
    # Read-only variables are fixed settings of the script, not options.
    [[ "${!_po_var@a}" != *r* ]] || _po_die "${_po_name} is not an option: ${_po_var} is fixed in ${0##*/}"
    case "${!_po_var}" in
        true | false)
            case "${_po_value}" in
                true | false) ;;
                *) _po_die "option ${_po_name} takes true or false, got '${_po_value}'" ;;
            esac
            ;;
    esac
    printf -v "${_po_var}" '%s' "${_po_value}"
done

unset _po_args _po_i _po_arg _po_file _po_name _po_value _po_var
unset -f _po_die
true
