#!/usr/bin/env bash
# Fashion-MNIST (Xiao, Rasul & Vollgraf 2017: 60,000 + 10,000 28x28 grey
# images of clothing in 10 classes, MIT licence), benchmark 9's harder data
# set (-quality-data fashion-mnist), from Debian's own package
# dataset-fashion-mnist (bookworm, main). `apt-get download` fetches the
# .deb into a scratch directory and dpkg-deb unpacks its four gzipped IDX
# files into .cache/fashion-mnist; nothing is installed system-wide. If the
# package is installed already, its /usr/share/datasets/fashion-mnist is
# used. Prints the directory that holds the files.
#
# Environment: FASHION_MNIST_CACHE (.cache/fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${FASHION_MNIST_CACHE:-$PWD/.cache/fashion-mnist}
FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
die() { echo "fetch-fashion-mnist: $*" >&2; exit 1; }
have() {
  local f
  for f in $FILES; do [ -s "$1/$f" ] || return 1; done
}
for d in "$OUT" /usr/share/datasets/fashion-mnist; do
  if have "$d"; then echo "$d"; exit 0; fi
done
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  die "needs apt-get and dpkg-deb (a Debian machine), or the four IDX files in $OUT"
mkdir -p "$(dirname "$OUT")"
tmp=$(mktemp -d "$(dirname "$OUT")/fashion-mnist.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt's _apt user writes the download here when it can
get() { (cd "$tmp" && apt-get download -q dataset-fashion-mnist) >&2; }
if ! get; then
  # A machine whose package index was never fetched knows no such package.
  [ "$(id -u)" = 0 ] || die "apt-get download dataset-fashion-mnist failed; run apt-get update as root, or put the four IDX files in $OUT"
  apt-get update -q >&2 && get || die "apt-get download dataset-fashion-mnist failed"
fi
dpkg-deb -x "$tmp"/dataset-fashion-mnist_*.deb "$tmp/root"
src=$tmp/root/usr/share/datasets/fashion-mnist
have "$src" || die "the package holds no $FILES under /usr/share/datasets/fashion-mnist"
rm -rf "$OUT"
mv "$src" "$OUT"
echo "$OUT"
