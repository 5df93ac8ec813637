# lcowsnap: the two commands are `make run` and `make test`; see README.md.
#
# Build trees live under build/<preset>/ (CMakePresets.json). This Makefile
# never touches build/deps (cross-built Windows libraries), build/wine-prefix
# (the shared Wine prefix) or anyone's build/dev-* tree, except `distclean`.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

JOBS ?= 2
FUZZ_SECONDS ?= 300
# Absolute: lcowsnap rejects relative roots. ./var/ is git-ignored.
ROOT_DIR ?= $(CURDIR)/var/lcowsnap
LCOWSNAP := build/native/service/lcowsnap

export LCOW_JOBS := $(JOBS)

.PHONY: help deps deps-native run test stress-test bench fmt fuzz torture clean distclean

help:
	@echo "make run       install deps, build natively, run lcowsnap in the foreground (--root $(ROOT_DIR))"
	@echo "make test      install deps; build and test native, native-asan, win64 (Wine) and fuzz"
	@echo "make stress-test  the win64 (Wine) suite 5 times under stress-ng --cpu 2, zero failures"
	@echo "make deps      apt packages + Windows libraries in build/deps/win64"
	@echo "make bench     Release build, run every build/release/bench/bench_* program"
	@echo "make fuzz      fuzz every target for FUZZ_SECONDS (default 300) each"
	@echo "make torture   ctest -L torture in the native build"
	@echo "make fmt       clang-format -i every tracked .c/.h"
	@echo "make clean     remove build/{native,native-asan,win64,fuzz,release}"
	@echo "make distclean also remove build/deps and build/wine-prefix"

deps:
	@scripts/install-deps.sh

deps-native:
	@scripts/install-deps.sh --native

run: deps-native
	@cmake --preset native >/dev/null
	@cmake --build --preset native -j $(JOBS)
	@if [ ! -x $(LCOWSNAP) ]; then \
	  echo "make run: $(LCOWSNAP) was not built: service/CMakeLists.txt defines no" \
	       "lcowsnap executable yet (the service module is not in this tree)." >&2; \
	  exit 1; \
	fi
	@mkdir -p $(ROOT_DIR)
	@echo "make run: $(LCOWSNAP) --root $(ROOT_DIR) (Ctrl+C to stop)"
	@exec $(LCOWSNAP) --root $(ROOT_DIR)

test: deps
	@scripts/run-tests.sh native native-asan win64 fuzz

# The win64 suite under CPU load (two stress-ng hogs on top of the tests' own
# -j2): a test that passes only on an idle machine has a race. LCOW_STRESS_ROUNDS
# (default 5) rounds in build/win64; see scripts/stress-test.sh.
stress-test: deps
	@scripts/stress-test.sh

# Convention: a bench/<area>.cmake fragment adds executables named bench_*;
# they land in build/release/bench/ and each runs with no arguments, printing
# its table. LCOW_BENCH_TMP is a scratch directory they may use.
bench: deps-native
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)
	@shopt -s nullglob; progs=(build/release/bench/bench_*); \
	if [ $${#progs[@]} = 0 ]; then \
	  echo "make bench: no bench_* programs in build/release/bench yet (bench/*.cmake defines none)" >&2; \
	  exit 1; \
	fi; \
	mkdir -p build/release/bench-tmp; \
	for p in "$${progs[@]}"; do \
	  [ -x "$$p" ] || continue; \
	  echo "==== $$p"; \
	  LCOW_BENCH_TMP=$(CURDIR)/build/release/bench-tmp "$$p"; \
	done

fmt:
	@git ls-files -z '*.c' '*.h' | xargs -0 -r clang-format -i
	@echo "make fmt: formatted $$(git ls-files '*.c' '*.h' | wc -l) files"

# Same build tree as `make test`: -D on the command line beats the preset's 10 s,
# and the next `make test` (cmake --preset fuzz) puts 10 s back.
fuzz: deps-native
	@cmake --preset fuzz -DLCOW_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@build_rc=0; cmake --build --preset fuzz -j $(JOBS) -- -k 0 || build_rc=$$?; \
	ctest --preset fuzz -L fuzz --no-tests=error --timeout $$(( $(FUZZ_SECONDS) + 300 )); \
	if [ $$build_rc != 0 ]; then echo "make fuzz: the fuzz build had failures (above)" >&2; exit 1; fi

torture: deps-native
	@cmake --preset native >/dev/null
	@cmake --build --preset native -j $(JOBS)
	@rc=0; ctest --preset native -L torture --no-tests=error || rc=$$?; \
	cat build/native/reliability-summary.txt 2>/dev/null || true; exit $$rc

# The win64 tests keep their files in /tmp/lcow-test-<first 10 hex digits of
# the MD5 of the build directory> (tests/CMakeLists.txt: short Windows paths).
clean:
	rm -rf build/native build/native-asan build/win64 build/fuzz build/release
	rm -rf /tmp/lcow-test-$$(printf '%s' '$(CURDIR)/build/win64' | md5sum | cut -c1-10)

# Only when asked: the Windows libraries take ~2 min and the prefix ~15 s to
# rebuild, and others may be using the prefix (its wineserver is ended first).
distclean: clean
	-LCOW_WINEPREFIX=$(CURDIR)/build/wine-prefix scripts/wine-env.sh down $$$$
	rm -rf build/deps build/wine-prefix build/wine-prefix.*
