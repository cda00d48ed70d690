#!/usr/bin/env bash
# `make test-modern`: the modern stack (environment.modern.yml, requirements.modern.lock.txt) tested on a machine
# whose glibc is too old for it (TFDV 1.21 needs glibc 2.39), in a Debian trixie root (glibc 2.41):
#   1. build the root with debootstrap, or reuse the cached one (ML_LIFECYCLE_CACHE, by default
#      ${XDG_CACHE_HOME:-~/.cache}/ml-lifecycle: outside the checkout, so a fresh CI clone reuses it);
#   2. copy this checkout into the root (the files git tracks or would track, and .git, as a clone has them);
#   3. `make env` there: tools/platform_stack.sh sees glibc 2.41 and installs the modern lock (.venv and uv's
#      download cache stay in the cached root, so a second run installs nothing);
#   4. `make test-quick` there;
#   5. a small-sample `dvc exp run` there, with the overrides of .github/workflows/ci.yml (SMALL_SAMPLE).
# The run's metrics, model choice and logs are copied to tmp/test-modern/ (git-ignored). Needs root (debootstrap,
# chroot, mount) and apt-get; the checkout itself is not changed. Set ML_LIFECYCLE_REBUILD=1 to rebuild the root.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${ML_LIFECYCLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ml-lifecycle}
ROOT=$CACHE/trixie-root
SUITE=trixie
INNER=/work/ml-lifecycle            # the checkout's copy, inside the root
OUT=$REPO/tmp/test-modern
PYTHON=${PYTHON:-python3.11}
# Bump when the recipe below changes, so cached roots are rebuilt.
RECIPE=1
PACKAGES="libssl3t64 libffi8 libsqlite3-0 gcc g++ make git"  # gcc/g++: pyfarmhash builds from source

say() { echo ">> test-modern: $*"; }
die() { echo "test-modern: $*" >&2; exit 1; }

# The host's Python 3.11, copied to the same path inside (its libpython is linked by absolute path).
PYHOME=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
KEY="recipe=$RECIPE suite=$SUITE python=$PYHOME $("$PYTHON" -c 'import platform; print(platform.python_version())') packages=$PACKAGES"
SMALL_SAMPLE=${SMALL_SAMPLE:-$(awk '/SMALL_SAMPLE:/ {on=1; next} on && /^ +-S / {sub(/^ +/, ""); printf "%s ", $0; next} on {exit}' \
  "$REPO/.github/workflows/ci.yml")}
[ -n "$SMALL_SAMPLE" ] || die "no SMALL_SAMPLE in .github/workflows/ci.yml"
if [ "${1:-}" = --small-sample ]; then echo "$SMALL_SAMPLE"; exit 0; fi  # what the run would use (for the tests)

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"
command -v apt-get >/dev/null || die "needs apt-get (a Debian or Ubuntu host)"
[ "$(uname -m)" = x86_64 ] || die "TFDV 1.21 has Linux wheels for x86_64 only"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one run at a time per cache

unmount_all() {  # everything mounted under $1, deepest first
  local m
  for m in $(awk -v r="$1" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}
mount_root() {  # $1: the root
  mountpoint -q "$1/proc" || mount -t proc proc "$1/proc"
  local d
  for d in dev sys; do  # /sys: joblib and TensorFlow read the CPU count there
    if ! mountpoint -q "$1/$d"; then
      mount --rbind "/$d" "$1/$d" && mount --make-rslave "$1/$d"  # rslave: unmounting here never reaches the host
    fi
  done
  cp /etc/resolv.conf "$1/etc/resolv.conf"
  mkdir -p "$1/etc/ssl/certs"
  # The host's CA bundle, so pip and uv reach the package index inside as they do here.
  cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$1/etc/ssl/certs/ca-certificates.crt"
}
in_root() {  # $1: the root; then the command. A clean environment: only what the tools need.
  local root=$1; shift
  local pass=() v
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -z "${!v:-}" ] || pass+=("$v=${!v}")
  done
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
    PATH="$PYHOME/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt UV_NATIVE_TLS=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 ${pass[@]+"${pass[@]}"} "$@"
}

build_root() {
  local new=$CACHE/trixie-root.new
  unmount_all "$new"; rm -rf --one-file-system "$new"
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  local mirror
  mirror=$(apt-get indextargets --format '$(REPO_URI)' | grep -v security | head -1)
  say "debootstrap $SUITE from ${mirror:-deb.debian.org}"
  debootstrap --variant=minbase "$SUITE" "$new" "${mirror:-http://deb.debian.org/debian/}" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
  say "copying Python from $PYHOME (without its site-packages)"
  mkdir -p "$new$(dirname "$PYHOME")"
  (cd "$(dirname "$PYHOME")" && tar --exclude="$(basename "$PYHOME")/lib/python3.11/site-packages/*" \
     --exclude='*/__pycache__' -cf - "$(basename "$PYHOME")") | (cd "$new$(dirname "$PYHOME")" && tar -xf -)
  mount_root "$new"
  say "apt-get install $PACKAGES"
  in_root "$new" apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
  in_root "$new" apt-get clean
  in_root "$new" "$PYHOME/bin/python3.11" -c 'import ssl, sqlite3, ctypes' || die "the copied Python does not run inside"
  echo "$KEY" >"$new/.root-key"
  unmount_all "$new"
  unmount_all "$ROOT"; rm -rf --one-file-system "$ROOT"
  mv "$new" "$ROOT"
}

trap 'unmount_all "$ROOT"; unmount_all "$CACHE/trixie-root.new"' EXIT
start=$SECONDS
if [ "${ML_LIFECYCLE_REBUILD:-0}" != 1 ] && [ "$(cat "$ROOT/.root-key" 2>/dev/null)" = "$KEY" ]; then
  say "reusing the cached root $ROOT"
else
  build_root
  say "root built in $((SECONDS - start)) s"
fi
mount_root "$ROOT"

say "copying the checkout to $INNER (its cached .venv kept)"
mkdir -p "$ROOT$INNER"
find "$ROOT$INNER" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf --one-file-system {} +
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
   | tar --null -T - --ignore-failed-read -cf - .git 2>/dev/null) | tar -xf - -C "$ROOT$INNER"

say "running inside the root: make env, make test-quick, dvc exp run $SMALL_SAMPLE"
rm -rf "$OUT"; mkdir -p "$OUT"
status=0
in_root "$ROOT" bash -c '
  set -uo pipefail
  cd "$1"; small=$2; t=$SECONDS; status=0
  stack=$(sh tools/platform_stack.sh)
  echo ">> inside: $(getconf GNU_LIBC_VERSION), stack $stack"
  [ "$stack" = modern ] || { echo "expected the modern stack here" >&2; exit 1; }
  make env >/tmp/make-env.log 2>&1 || { tail -40 /tmp/make-env.log; exit 1; }
  .venv/bin/python -c "import tensorflow_data_validation as v, tensorflow as tf, pandas as pd, numpy as np, pyarrow as pa, sklearn, apache_beam as b, skops
print(\">> inside: tfdv\", v.__version__, \"tensorflow\", tf.__version__, \"pandas\", pd.__version__, \"numpy\", np.__version__, \"pyarrow\", pa.__version__, \"scikit-learn\", sklearn.__version__, \"apache-beam\", b.__version__, \"skops\", skops.__version__)" \
    || exit 1
  echo ">> inside: environment ready after $((SECONDS - t)) s"; t=$SECONDS
  make test-quick 2>&1 | tee /tmp/test-quick.log | tail -60 || status=1
  echo ">> inside: make test-quick took $((SECONDS - t)) s (exit status $status)"; t=$SECONDS
  git config user.name test-modern && git config user.email test-modern@localhost
  PATH="$PWD/.venv/bin:$PATH" dvc exp run $small >/tmp/dvc-exp-run.log 2>&1 || { tail -60 /tmp/dvc-exp-run.log; status=1; }
  echo ">> inside: the small-sample dvc exp run took $((SECONDS - t)) s"
  for f in reports/metrics.json models/choice.json; do [ -f "$f" ] && { echo "== $f"; cat "$f"; echo; }; done
  exit $status
' test-modern "$INNER" "$SMALL_SAMPLE" || status=$?
for f in tmp/make-env.log tmp/test-quick.log tmp/dvc-exp-run.log work/ml-lifecycle/reports/metrics.json \
         work/ml-lifecycle/models/choice.json work/ml-lifecycle/reports/selection.md; do
  [ ! -f "$ROOT/$f" ] || cp "$ROOT/$f" "$OUT/"
done
say "done in $((SECONDS - start)) s: $([ "$status" = 0 ] && echo passed || echo "FAILED (logs in tmp/test-modern/)")"
exit "$status"
