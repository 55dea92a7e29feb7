#!/usr/bin/env bash
# The capbroker demo: starts capbrokerd on a private socket with a small
# policy and drives it with capctl, printing each command before its output.
#
#   tests/demo/demo.sh BAZEL_BIN    (the bazel-bin directory of a build)
#
# Everything lives in a fresh `mktemp -d` directory, removed on exit along
# with the broker. No sleeps: the script waits on the broker's ready line.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BAZEL_BIN" >&2
  exit 2
fi
bin=$(readlink -f "$1")
here=$(dirname "$(readlink -f "$0")")
sources=$(readlink -f "$here/../..")

dir=$(mktemp -d "${TMPDIR:-/tmp}/capbroker-demo.XXXXXX")
# By its real path: the policy below names paths in it, and the broker
# refuses a capability path through a symlink of root's (a TMPDIR that is
# one, say) when it loads the policy.
dir=$(readlink -f "$dir")
broker_pid=""
cleanup() {
  if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  # The broker made the journal's log append-only (its grant is append):
  # not even root removes it before the attribute is cleared.
  if [[ -e "$dir/journal.log" ]]; then chattr -a "$dir/journal.log" || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# Installed copies, so that the executable the broker identifies (and the
# audit log records) is a short path rather than one in Bazel's cache, and
# so that the services' user (nobody) can run them: the directory is 0755,
# its private files 0600.
chmod 755 "$dir"
mkdir -p "$dir/bin"
for program in broker/capbrokerd sdk/capctl/capctl services/scanner/scanner \
    services/scanner/scanner_client services/kvstore/kvstore \
    services/kvstore/kvstore_client services/journal/journal \
    services/journal/journal_client; do
  install -m 0755 "$bin/$program" "$dir/bin/"
done
capbrokerd="$dir/bin/capbrokerd"
capctl_bin="$dir/bin/capctl"
PATH="$dir/bin:$PATH"

socket="$dir/broker.sock"
audit="$dir/audit.log"
policy="$dir/policy.capnp"

# Shows a command, as typed, then runs it.
run() {
  local shown=() arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./=:@%+-]+$ ]]; then shown+=("$arg"); else shown+=("${arg@Q}"); fi
  done
  printf '\n$ %s\n' "${shown[*]}"
  "$@"
}
# capctl with the demo's socket; shown as plain `capctl`.
capctl() { "$capctl_bin" --socket "$socket" "$@"; }
# A command expected to fail: shows its exit code instead of stopping.
expect_failure() {
  local rc=0
  run "$@" || rc=$?
  if [[ $rc -eq 0 ]]; then
    echo "demo: expected '$*' to fail" >&2
    exit 1
  fi
  echo "(exit code $rc)"
}

umask 077
echo "Welcome to capbroker." > "$dir/motd"
echo "top secret" > "$dir/secret"
install -m 0644 "$sources/services/scanner/signatures.txt" "$dir/signatures.txt"
# The EICAR anti-virus test file, which the scanner must flag.
printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' > "$dir/eicar.com"
# The kvstore writes its data as the services' user.
mkdir "$dir/kv"
chown 65534:65534 "$dir/kv"
mkdir "$dir/spool"
echo "job 1: print the report" > "$dir/spool/job"
sed -e "s|@UID@|$(id -u)|g" -e "s|@DIR@|$dir|g" \
  "$here/demo_policy.capnp.in" > "$policy"
# The broker refuses a policy others could write.
chmod 600 "$policy"

echo "== capbroker demo in $dir"
echo "== policy:"
grep -v '^#' "$policy"

# The broker writes its ready line to --ready-fd once it listens. The fifo
# is opened read-write on our side first, so neither open blocks, and a
# broker that dies before it is ready makes `read -t` time out instead of
# hanging the script.
mkfifo "$dir/ready"
exec {ready_fd}<>"$dir/ready"
"$capbrokerd" --policy "$policy" --socket "$socket" --audit-log "$audit" \
  --ready-fd 3 3>"$dir/ready" &
broker_pid=$!
if ! read -r -t 10 -u "$ready_fd" ready_line; then
  echo "demo: capbrokerd did not become ready" >&2
  exit 1
fi
exec {ready_fd}<&-
echo "== capbrokerd (pid $broker_pid) is ready: $ready_line"

run capctl policy check "$policy"
run capctl list
run capctl request motd
run capctl request spool --access read
run capctl request scratch
run capctl exec motd -- /bin/sh -c 'cat <&3; echo "LISTEN_FDS=$LISTEN_FDS LISTEN_FDNAMES=$LISTEN_FDNAMES"'
run capctl open spool job
expect_failure capctl open spool ../secret
expect_failure capctl request secret
run capctl status

echo
echo "== hosted services"
run capctl services
# scanner_client exits 1 when a file is infected.
expect_failure capctl connect scanner -- scanner_client "$dir/motd" "$dir/eicar.com"
run capctl connect kvstore -- kvstore_client put greeting "hello from the demo"
run capctl connect kvstore -- kvstore_client get greeting
run capctl connect journal -- journal_client append "the demo ran"
run cat "$dir/journal.log"
printf '\n# the broker created the log append-only: the journal can add to it, never truncate it\n'
run lsattr "$dir/journal.log"
printf '\n# the same connect, as another user: the policy does not list %s\n' "'others'"
expect_failure setpriv --reuid=65534 --regid=65534 --clear-groups \
  "$capctl_bin" --socket "$socket" connect journal -- journal_client append "intruder"
run capctl services

echo
echo "== audit log ($audit):"
cat "$audit"

echo
echo "== stopping capbrokerd with SIGTERM"
kill -TERM "$broker_pid"
rc=0
wait "$broker_pid" || rc=$?
broker_pid=""
echo "capbrokerd exited with status $rc"
if [[ -e "$socket" ]]; then
  echo "demo: the broker left its socket behind" >&2
  exit 1
fi
echo "its socket $socket is gone"
[[ $rc -eq 0 ]]
