#!/bin/sh
# first-install.sh: the first release on a fresh unit, which has no `lfr` yet to run
# `lfr update apply`. Run as root:
#
#     sh first-install.sh BUNDLE SHA256 [options for lfr update apply]
#
# SHA256 is the bundle file's sha256, taken from where the release was announced (out of band:
# the release notes, a signed mail, the workshop's ticket), never from the same stick as the
# bundle. The script:
#   1. copies BUNDLE into a fresh work folder (under $TMPDIR, default /var/tmp: on disk, since
#      the copy and the venv take about 1 GB) and checks the copy's sha256 against SHA256;
#      everything after that reads the checked copy only;
#   2. makes a temporary venv with the unit's Python (python3, or $PYTHON) and installs into it
#      ONLY the bundle's own wheels (pip install --no-index --no-deps; the unit's pip
#      configuration and PIP_* variables ignored);
#   3. runs that venv's `lfr update apply COPY --health-command 'bin/lfr --help' [options]`,
#      which verifies the release signature against ROOT/etc/lfr-edge/release.keys and every
#      file's sha256, and lays out ROOT/opt/lfr-edge and the systemd files (see
#      docs/RELEASES.md). Its health check only runs the installed `lfr` (the unit is not
#      provisioned yet, so the service cannot start); nothing is restarted or reloaded. Options
#      given after SHA256 go to `lfr update apply` (e.g. --root DIR; a later --health-command
#      replaces the default);
#   4. removes the work folder, whatever happened.
#
# Exit codes: 2 for a refusal here (usage, a sha256 that does not match, a missing file),
# otherwise what `lfr update apply` returned (0 installed, 1 rolled back, 2 refused), or the
# failing tool's status.
set -eu

usage() {
    echo "usage: sh first-install.sh BUNDLE SHA256 [options for lfr update apply]" >&2
    exit 2
}

[ "$#" -ge 2 ] || usage
bundle=$1
expected=$(printf '%s' "$2" | tr 'A-F' 'a-f')
shift 2

case $expected in
    *[!0-9a-f]*) echo "first-install: SHA256 must be 64 hex digits, got '$expected'" >&2; exit 2 ;;
esac
if [ "${#expected}" -ne 64 ]; then
    echo "first-install: SHA256 must be 64 hex digits, got ${#expected}" >&2
    exit 2
fi
if [ ! -f "$bundle" ]; then
    echo "first-install: $bundle is not a file" >&2
    exit 2
fi

python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/lfr-first-install.XXXXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

copy="$work/bundle.lfr"
cp -- "$bundle" "$copy"
actual=$(sha256sum "$copy" | cut -d ' ' -f 1)
if [ "$actual" != "$expected" ]; then
    echo "first-install: REFUSED: $bundle has sha256 $actual, the release was announced" \
         "with $expected (another file, altered or damaged); nothing was installed" >&2
    exit 2
fi
echo "first-install: $bundle has the announced sha256 $expected"

# Only the wheels: the bundle's manifest and signature are checked by lfr update apply.
mkdir "$work/files"
tar -xf "$copy" -C "$work/files" --no-same-owner --no-same-permissions --wildcards 'wheels/*.whl'
for name in $(env | sed -n 's/^\(PIP_[A-Za-z0-9_]*\)=.*/\1/p'); do
    unset "$name"
done
export PIP_CONFIG_FILE=/dev/null
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --isolated --no-index --no-deps --no-cache-dir \
    --no-compile --disable-pip-version-check "$work"/files/wheels/*.whl
echo "first-install: a temporary lfr is in $work/venv; running its lfr update apply"

status=0
"$work/venv/bin/lfr" update apply "$copy" --health-command 'bin/lfr --help' "$@" || status=$?
exit "$status"
