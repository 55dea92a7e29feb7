#!/bin/sh
# Installs the Debian packages named on the command line that are not
# installed yet. Runs apt-get only when something is missing.
set -eu
missing=""
for p in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "capbroker: missing Debian packages:$missing (run as root, or install them)" >&2
  exit 1
fi
echo "capbroker: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
