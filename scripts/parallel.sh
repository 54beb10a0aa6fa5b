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

# The sources and the flags of a native/sources.json group.
src() { node -p "require('./native/sources.json').$1.join(' ')"; }
flags() { node -p "require('./native/sources.json').flags.$1.join(' ')"; }

# compile FILE [FLAGS…]: $CXX $COMMON FLAGS -c FILE into $out/ as a job (spawn); its object is
# appended to the caller's objs array.
compile() {
  local f=$1 o="$out/$(echo "$1" | tr / _).o"
  shift
  spawn $CXX $COMMON "$@" -c "$f" -o "$o"
  objs+=("$o")
}
