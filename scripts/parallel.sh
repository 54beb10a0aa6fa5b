# Sourced by the self-test build scripts: `spawn CMD…` runs a command as a background job, at most
# one per core at a time; `drain` waits for all of them. With `set -e`, a failing job stops the
# calling script (wait -n returns its status), so no stale object file is ever linked.
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
spawn() {
  "$@" &
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
}
drain() {
  while [ -n "$(jobs -rp)" ]; do wait -n; done
  wait
}
