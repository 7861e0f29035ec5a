#!/usr/bin/env bash
# Installs the system packages espnet2_pse uses (espeak-ng for the embedded corpus, sox for
# audio tools, git-lfs for hub uploads, chromium and its driver for pse-app's browser tests)
# when running as root; otherwise names what is missing.
set -euo pipefail

# command -> Debian package
declare -A packages=([espeak-ng]=espeak-ng [sox]=sox [git-lfs]=git-lfs [chromium]=chromium [chromedriver]=chromium-driver)

missing=()
for cmd in "${!packages[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "tools: missing system packages: ${missing[*]}" >&2
    echo "tools: install them as root, e.g. 'sudo apt-get install ${missing[*]}', then rerun make" >&2
    exit 1
fi
command -v apt-get >/dev/null 2>&1 || {
    echo "tools: missing system packages (${missing[*]}) and no apt-get to install them" >&2
    exit 1
}
echo "tools: installing system packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
