#!/usr/bin/env bash
# `make test-asan`: builds the C++ shim with AddressSanitizer and UBSan into
# build/asan/ (objects, lib/libgptorch.so and the test binary; the normal
# lib/ is left alone) and runs the torch
# package's tests against it.
#
# The Go test binary itself is not instrumented (cgo code compiled by go is
# not, and libtorch is Debian's), so the ASan runtime has to be the first
# library loaded: it is LD_PRELOADed. It then checks every access the shim
# makes, and, through its malloc, reports libtorch or shim code that touches
# freed or out-of-bounds heap memory; UBSan checks the shim's own arithmetic,
# casts and vptrs and aborts on the first finding.
#
# Environment (the Makefile passes its own): CXX, GO, JOBS, TORCH_INC (include
# dirs), TORCH_LIB (lib dir), TORCH_CUDA (extra link flags), FIXTURES, RUN
# (a go test -run pattern, default all).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
CXX=${CXX:-g++}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
JOBS=${JOBS:-2}
MULTIARCH=$("$CXX" -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
TORCH_INC=${TORCH_INC:-/usr/include /usr/include/torch/csrc/api/include}
TORCH_LIB=${TORCH_LIB:-/usr/lib/$MULTIARCH}
TORCH_CUDA=${TORCH_CUDA:-}
FIXTURES=${FIXTURES:-$root/.cache/fixtures}
RUN=${RUN:-.}

libasan=$("$CXX" -print-file-name=libasan.so)
if [[ ! -e $libasan ]]; then
  echo "test-asan: $CXX has no libasan.so (Debian: apt-get install libasan8, or the gcc package that ships it)" >&2
  exit 1
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
inc=()
for d in $TORCH_INC; do
  [[ $d == /usr/include ]] || inc+=(-isystem "$d")
done
flags=(-O0 -g1 $SAN -std=c++17 -fPIC -Wall -Wno-unused-parameter "${inc[@]}")

mkdir -p build/asan/lib
start=$SECONDS
objs=()
pids=()
for src in cgo/*.cc; do
  obj=build/asan/$(basename "${src%.cc}").o
  objs+=("$obj")
  if [[ ! -e $obj || $src -nt $obj || cgo/gptorch.h -nt $obj || cgo/internal.h -nt $obj ]]; then
    while (($(jobs -rp | wc -l) >= JOBS)); do wait -n; done
    echo "$CXX [asan] -c $src"
    "$CXX" "${flags[@]}" -c "$src" -o "$obj" &
    pids+=($!)
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
lib=build/asan/lib/libgptorch.so
need_link=0
[[ -e $lib ]] || need_link=1
for o in "${objs[@]}"; do [[ $o -nt $lib ]] && need_link=1; done
if ((need_link)); then
  # shellcheck disable=SC2086 # TORCH_CUDA is a word list
  "$CXX" -shared $SAN -o "$lib" "${objs[@]}" -L"$TORCH_LIB" -Wl,-rpath,"$TORCH_LIB" \
    $TORCH_CUDA -ltorch -ltorch_cpu -lc10
fi
echo "test-asan: shim built in $((SECONDS - start))s"

# Link the test binary against build/asan/lib: CGO_LDFLAGS comes before the
# package's own -L/-rpath (lib/), so both the link and the loader find the
# instrumented copy first.
bin=build/asan/torch.test
if ! out=$(CGO_LDFLAGS="-L$root/build/asan/lib -Wl,-rpath,$root/build/asan/lib" "$GO" test -c -o "$bin" ./torch/ 2>&1); then
  echo "$out" >&2
  exit 1
fi
# ld warns that libasan itself uses tmpnam and friends; not ours to fix.
grep -v "is dangerous, better use" <<<"$out" >&2 || true
deps=$(ldd "$bin")
if [[ $deps != *"$root/build/asan/lib/libgptorch.so"* ]]; then
  echo "test-asan: $bin does not load build/asan/lib/libgptorch.so:" >&2
  grep gptorch <<<"$deps" >&2
  exit 1
fi

# detect_leaks=0: libtorch allocates its registries, thread pools and
# interned strings once and never frees them (by design, as most C++
# runtimes), so LeakSanitizer reports hundreds of "leaks" at exit that are
# not ours; live handles are counted by the torch tests instead
# (TestNoLeaks, LiveHandles).
# handle_segv=0, allow_user_segv_handler=1: the Go runtime owns SIGSEGV (nil
# checks become panics through it); ASan must not take it over.
# Nothing else is suppressed: no alloc_dealloc_mismatch or ODR exceptions
# were needed with Debian's libtorch 1.13.
export ASAN_OPTIONS=detect_leaks=0:handle_segv=0:allow_user_segv_handler=1:abort_on_error=1:halt_on_error=1:print_summary=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
log=build/asan/test.log
start=$SECONDS
set +e
(cd torch && GOPRUNER_FIXTURES=$FIXTURES LD_PRELOAD=$libasan "$root/$bin" -test.count=1 -test.timeout=30m -test.run "$RUN" -test.v) >"$log" 2>&1
rc=$?
set -e
grep -E "^(--- |ok|PASS|FAIL)" "$log" | grep -v "^--- PASS" || true
if grep -qE "ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$log"; then
  echo "test-asan: sanitizer findings (see $log):" >&2
  grep -E -A30 "ERROR: AddressSanitizer|runtime error:" "$log" | head -80 >&2
  exit 1
fi
if ((rc != 0)); then
  echo "test-asan: torch tests failed (exit $rc); see $log" >&2
  tail -30 "$log" >&2
  exit "$rc"
fi
echo "test-asan: torch tests clean under ASan+UBSan in $((SECONDS - start))s"
