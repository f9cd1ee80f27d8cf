# gopruner build. `make run` runs the demo; `make test` installs what is
# missing, builds, generates fixtures and runs every test.
SHELL := /bin/bash
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
CXX ?= g++
JOBS ?= 2

# libtorch: $LIBTORCH (include/ + lib/), else Debian's libtorch-dev, else the
# torch Python package's own directory. Recursive (=) so that `make deps`
# can install it before the first use.
MULTIARCH = $(shell $(CXX) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
PYTORCH_DIR = $(shell for p in python3 /usr/bin/python3; do $$p -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null && break; done)
ifneq ($(LIBTORCH),)
TORCH_INC = $(LIBTORCH)/include $(LIBTORCH)/include/torch/csrc/api/include
TORCH_LIB = $(LIBTORCH)/lib
else
TORCH_INC = $(if $(wildcard /usr/include/torch/script.h),/usr/include /usr/include/torch/csrc/api/include,$(PYTORCH_DIR)/include $(PYTORCH_DIR)/include/torch/csrc/api/include)
TORCH_LIB = $(if $(wildcard /usr/include/torch/script.h),/usr/lib/$(MULTIARCH),$(PYTORCH_DIR)/lib)
endif
# CUDA builds of libtorch: link torch_cuda even though the shim names none of
# its symbols, or --as-needed drops it and CUDA silently disappears.
comma := ,
TORCH_CUDA = $(if $(wildcard $(TORCH_LIB)/libtorch_cuda.so),-Wl$(comma)--no-as-needed -ltorch_cuda -lc10_cuda -Wl$(comma)--as-needed)
CXXFLAGS ?= -O2
SHIM_CXXFLAGS = $(CXXFLAGS) -std=c++17 -fPIC -Wall -Wno-unused-parameter $(addprefix -isystem ,$(filter-out /usr/include,$(TORCH_INC)))
SHIM_SRC := $(wildcard cgo/*.cc)
SHIM_OBJ := $(patsubst cgo/%.cc,build/shim/%.o,$(SHIM_SRC))
SHIM := lib/libgptorch.so
FIXTURES := .cache/fixtures
GOFLAGS_BUILD := -trimpath -ldflags '-extldflags "-Wl,-rpath,$$ORIGIN/../lib"'
PURE_PKGS = $(shell CGO_ENABLED=0 $(GO) list -f '{{if .GoFiles}}{{.ImportPath}}{{end}}' ./third_party/... ./internal/... 2>/dev/null)

.PHONY: all deps shim build test test-go test-pure test-fuzz run bench fixtures container-check clean

all: build

deps:
	@bash scripts/deps.sh

build/shim/%.o: cgo/%.cc cgo/gptorch.h cgo/internal.h
	@mkdir -p build/shim
	$(CXX) $(SHIM_CXXFLAGS) -c $< -o $@

$(SHIM): $(SHIM_OBJ)
	@mkdir -p lib
	$(CXX) -shared -o $@ $(SHIM_OBJ) -L$(TORCH_LIB) -Wl,-rpath,$(TORCH_LIB) $(TORCH_CUDA) -ltorch -ltorch_cpu -lc10
	@echo "shim built against libtorch in $(TORCH_LIB)"

shim: $(SHIM)

build: $(SHIM)
	@mkdir -p bin
	$(GO) build $(GOFLAGS_BUILD) -o bin/gopruner ./cmd/gopruner

fixtures:
	@/usr/bin/python3 scripts/make_fixtures.py $(FIXTURES)

# The whole suite: pure-Go packages without cgo, everything with libtorch,
# short seeded fuzz runs and the race detector on the pure core.
test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) shim
	@$(MAKE) --no-print-directory check-libtorch2
	@$(MAKE) --no-print-directory build fixtures
	@$(MAKE) --no-print-directory test-go

# The shim must stay compilable against libtorch 2.x: Debian trixie's
# libtorch-dev 2.6 headers, fetched into .cache/libtorch2 (no GPU, nothing
# installed system-wide), every cgo/*.cc with -fsyntax-only.
.PHONY: check-libtorch2
check-libtorch2:
	@CXX="$(CXX)" JOBS=$(JOBS) bash scripts/check_libtorch2.sh

test-go:
	CGO_ENABLED=0 $(GO) test -count=1 $(PURE_PKGS)
	$(GO) vet ./...
	$(GO) test -count=1 -race $(PURE_PKGS)
	@$(MAKE) --no-print-directory test-fuzz
	GOPRUNER_FIXTURES=$(CURDIR)/$(FIXTURES) GOPRUNER_BIN=$(CURDIR)/bin/gopruner $(GO) test -count=1 -timeout 40m ./...

test-fuzz:
	@bash scripts/fuzz.sh 10s

run: deps
	@$(MAKE) --no-print-directory -j$(JOBS) shim
	@$(MAKE) --no-print-directory build
	./bin/gopruner demo

bench: deps
	@$(MAKE) --no-print-directory -j$(JOBS) shim
	@$(MAKE) --no-print-directory build fixtures
	@bash bench/run.sh

container-check:
	@bash dtools/container_check.sh

clean:
	rm -rf bin lib build

# AddressSanitizer + UBSan build of the shim (into build/asan/, lib/ is left
# alone) and the torch package's tests against it; see scripts/test_asan.sh.
.PHONY: test-asan
test-asan:
	@CXX="$(CXX)" GO="$(GO)" JOBS=$(JOBS) TORCH_INC="$(TORCH_INC)" TORCH_LIB="$(TORCH_LIB)" TORCH_CUDA="$(TORCH_CUDA)" FIXTURES="$${GOPRUNER_FIXTURES:-$(CURDIR)/$(FIXTURES)}" bash scripts/test_asan.sh
