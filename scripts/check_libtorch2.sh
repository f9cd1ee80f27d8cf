#!/usr/bin/env bash
# Does the shim still compile against libtorch 2.x? Debian bookworm ships
# libtorch 1.13; trixie ships libtorch-dev 2.6. This fetches trixie's
# libtorch-dev with a private apt configuration under .cache/libtorch2
# (nothing is installed system-wide), unpacks its headers and compiles every
# cgo/*.cc against them with -fsyntax-only (its shared libraries need
# trixie's glibc, so nothing is linked).
#
# Warm runs reuse the unpacked headers (stamp keyed by the package version)
# and refresh the package index at most every LIBTORCH2_MAX_AGE_DAYS days
# (default 7); LIBTORCH2_REFRESH=1 forces a refresh. If the refresh fails
# but headers are unpacked, the check runs against them with a warning.
#
# Environment: CXX (g++), JOBS (2), LIBTORCH2_MIRROR (default: the Debian
# mirror in this machine's apt sources), LIBTORCH2_SUITE (trixie),
# LIBTORCH2_PKGS (libtorch-dev; extra -dev packages whose headers the
# compile needs go here, only their usr/include is kept), LIBTORCH2_CACHE
# (.cache/libtorch2).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
CXX=${CXX:-g++}
JOBS=${JOBS:-2}
SUITE=${LIBTORCH2_SUITE:-trixie}
PKGS=${LIBTORCH2_PKGS:-libtorch-dev}
MAX_AGE=${LIBTORCH2_MAX_AGE_DAYS:-7}
C=${LIBTORCH2_CACHE:-$PWD/.cache/libtorch2}
A=$C/apt
ROOT=$C/root
STAMP=$ROOT/.unpacked
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() { echo "check-libtorch2: $*" >&2; exit 1; }
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  die "needs apt-get and dpkg-deb (a Debian machine)"
command -v "$CXX" >/dev/null || die "no C++ compiler '$CXX'"

# The Debian mirror this machine already uses (it may be a proxy or a
# snapshot host), from one-line or deb822 sources; else deb.debian.org.
mirror() {
  local f u
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    u=$(sed -nE -e 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]].*/\2/p' \
                -e 's/^URIs:[[:space:]]*//p' "$f" | tr ' ' '\n' |
        grep -E '^https?://.*/debian/?$' | head -n1 || true)
    [ -n "$u" ] && { echo "${u%/}"; return; }
  done
  echo http://deb.debian.org/debian
}
MIRROR=${LIBTORCH2_MIRROR:-$(mirror)}

mkdir -p "$A"/{lists/partial,cache/archives/partial,parts,prefs,state,debs}
exec 9>"$C/lock"
flock 9 # one run per tree at a time
rm -rf "$C"/x.* "$C"/t.* "$ROOT.new" # leftovers of an interrupted run
: >"$A/state/status"
signed=""
[ -r "$KEYRING" ] && signed="[signed-by=$KEYRING] "
echo "deb ${signed}$MIRROR $SUITE main" >"$A/sources.list"
{
  echo "Dir::Etc::SourceList \"$A/sources.list\";"
  echo 'Dir::Etc::SourceParts "/dev/null";'
  echo "Dir::Etc::Parts \"$A/parts\";" # no system hooks (docker-clean, appstream...)
  echo 'Dir::Etc::Preferences "/dev/null";'
  echo "Dir::Etc::PreferencesParts \"$A/prefs\";"
  echo "Dir::State \"$A/state\";"
  echo "Dir::State::Lists \"$A/lists\";"
  echo "Dir::State::status \"$A/state/status\";"
  echo "Dir::Cache \"$A/cache\";"
  echo 'APT::Architecture "amd64";'
  echo 'APT::Architectures { "amd64"; };'
  echo 'APT::Sandbox::User "root";'
  echo 'Acquire::Languages "none";'
  echo 'Acquire::GzipIndexes "true";' # small lists, no binary caches:
  echo 'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' # 10 MB, not 140
  # keep the machine's proxy and validity settings (its sources may need them)
  apt-config dump 2>/dev/null |
    grep -E '^Acquire::([a-z]+::Proxy|Check-Valid-Until|Check-Date)' || true
} >"$A/apt.conf"
export APT_CONFIG=$A/apt.conf

have=$(cat "$STAMP" 2>/dev/null || true)
stale=0 fresh=0
lists_ok() { compgen -G "$A/lists/*_dists_${SUITE}_*Packages*" >/dev/null; }
if [ "${LIBTORCH2_REFRESH:-0}" = 1 ] || ! lists_ok ||
   [ -n "$(find "$A/lists" -maxdepth 1 -name "*_dists_${SUITE}_InRelease" -mtime +"$MAX_AGE")" ]; then
  if ! out=$(apt-get -q update 2>&1) || grep -qE '^(E:|W: Failed)' <<<"$out" || ! lists_ok; then
    msg="cannot fetch the Debian '$SUITE' package index from $MIRROR (no network, or no '$SUITE' suite there):
$(grep -E '^(E:|W:|Err)' <<<"$out" | head -n5)"
    [ -n "$have" ] || die "$msg"
    echo "check-libtorch2: warning: $msg
check-libtorch2: warning: checking against the headers already unpacked ($have)" >&2
    stale=1
  fi
  [ "$stale" = 1 ] || fresh=1
fi

# What the index offers now; unpack again only when it changed.
# (cached in $A/want until the index is refreshed: apt-cache takes seconds)
want=$have
if [ "$stale$fresh" = 00 ] && [ -s "$A/want" ]; then
  cached=$(cat "$A/want")
  # only if it names the same packages
  if [ "$(sed -E 's/=[^ ]*//g' <<<"$cached")" = "$(echo $PKGS)" ]; then want=$cached stale=1; fi
fi
if [ "$stale" = 0 ]; then
  want=""
  for p in $PKGS; do
    v=$(apt-cache show --no-all-versions "$p" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
    [ -n "$v" ] || die "no package '$p' in Debian $SUITE at $MIRROR"
    want+="$p=$v "
  done
  want=${want% }
  echo "$want" >"$A/want"
fi

if [ "$want" != "$have" ]; then
  echo "check-libtorch2: fetching $want from $MIRROR $SUITE"
  rm -rf "$A/debs" && mkdir -p "$A/debs" "$ROOT.new/usr/include"
  (cd "$A/debs" && apt-get -q download $want >/dev/null) ||
    die "apt-get download $want failed (from $MIRROR $SUITE)"
  for deb in "$A"/debs/*.deb; do
    x=$(mktemp -d "$C/x.XXXXXX")
    dpkg-deb -x "$deb" "$x"
    [ -d "$x/usr/include" ] && cp -a "$x/usr/include/." "$ROOT.new/usr/include/"
    rm -rf "$x"
  done
  rm -rf "$A/debs"/*.deb "$ROOT"
  echo "$want" >"$ROOT.new/.unpacked"
  mv "$ROOT.new" "$ROOT"
fi

INC=$ROOT/usr/include
[ -r "$INC/torch/script.h" ] || die "no torch/script.h in $INC (package layout changed?)"
# -isystem dirs come before /usr/include, so bookworm's 1.13 headers do not
# shadow these; the probe and the dependency check below make sure.
INCF=(-isystem "$INC" -isystem "$INC/torch/csrc/api/include")
FLAGS=(-std=c++17 -fsyntax-only -Wall -Wno-unused-parameter "${INCF[@]}")
T=$(mktemp -d "$C/t.XXXXXX")
trap 'rm -rf "$T"' EXIT
printf '#include <torch/version.h>\nstatic_assert(TORCH_VERSION_MAJOR >= 2, "not libtorch 2.x");\nconst char *v = TORCH_VERSION;\n' >"$T/probe.cc"
"$CXX" "${FLAGS[@]}" "$T/probe.cc" || die "torch/version.h did not resolve to libtorch 2.x"
ver=$("$CXX" -std=c++17 -E -P "${INCF[@]}" "$T/probe.cc" | sed -n 's/.*v = "\([^"]*\)".*/\1/p')

files=(cgo/*.cc)
compile() { # file -> $T/<name>.{log,d,ok}
  local f=$1 b
  b=$(basename "$f" .cc)
  if "$CXX" "${FLAGS[@]}" -MD -MF "$T/$b.d" "$f" >"$T/$b.log" 2>&1; then
    : >"$T/$b.ok"
  fi
}
running=0
for f in "${files[@]}"; do
  compile "$f" &
  if ((++running >= JOBS)); then wait -n || true; running=$((running - 1)); fi
done
wait

ok=0 bad=()
for f in "${files[@]}"; do
  b=$(basename "$f" .cc)
  [ -s "$T/$b.log" ] && cat "$T/$b.log"
  if [ -f "$T/$b.ok" ]; then
    # a header of the system's libtorch 1.13 slipping in would mix versions
    leak=$(tr ' \\' '\n\n' <"$T/$b.d" | grep -E '^/usr/include/(torch|ATen|c10|caffe2)/' | head -n3 || true)
    if [ -n "$leak" ]; then
      echo "check-libtorch2: $f included system libtorch headers:"$'\n'"$leak" >&2
      bad+=("$f")
    else
      ok=$((ok + 1))
    fi
  else
    bad+=("$f")
  fi
done
n=${#files[@]}
if ((${#bad[@]})); then
  die "libtorch $ver ($want, Debian $SUITE): ${#bad[@]} of $n shim files FAILED: ${bad[*]} ($((SECONDS - start))s)"
fi
echo "check-libtorch2: libtorch $ver ($want, Debian $SUITE): $ok/$n shim files OK ($((SECONDS - start))s)"
