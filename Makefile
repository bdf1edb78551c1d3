# Thin wrapper over CMake, pytest and the setup script.
#   make app    the app on its built-in tiny model (http://127.0.0.1:7860)
#   make test   every test: C (gcc, clang, ASan+UBSan, TSan, valgrind),
#               a short fuzz run, and the Python/app/browser tests
#   make bench  benchmarks (CPU; see bench/ for the GPU scripts)
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := build
JOBS ?= 2
CTEST := ctest --output-on-failure --timeout 600
FUZZ_SECONDS ?= 30

.PHONY: setup build test test-c test-clang test-asan test-tsan test-valgrind fuzz-short \
        test-python typecheck app bench clean

setup:
	scripts/setup.sh

build:
	cmake -S . -B build -G Ninja >/dev/null
	cmake --build build -j$(JOBS)

test: setup
	scripts/run_tests.sh

test-c: build
	$(CTEST) --test-dir build

test-clang:
	CC=clang cmake -S . -B build-clang -G Ninja >/dev/null
	cmake --build build-clang -j$(JOBS)
	$(CTEST) --test-dir build-clang

test-asan:
	CC=clang cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DVRAM_SANITIZE=address,undefined >/dev/null
	cmake --build build-asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(CTEST) --test-dir build-asan

test-tsan:
	CC=clang cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DVRAM_SANITIZE=thread >/dev/null
	cmake --build build-tsan -j$(JOBS)
	TSAN_OPTIONS=halt_on_error=1 $(CTEST) --test-dir build-tsan -R 'engine|arena|bench'

# Every C test under memcheck, except the soak (500 forwards: minutes under
# valgrind; ASan/LSan cover it).
test-valgrind: build
	@for t in build/test_*; do \
	  case $$t in *test_soak) continue;; esac; \
	  echo "valgrind: $$t"; \
	  VRAM_SOURCE_DIR=$(CURDIR) VRAM_CLI=$(CURDIR)/build/vram VRAM_CACHE_DIR=$(CURDIR)/build/test-cache \
	  valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	    --error-exitcode=1 $$t >/dev/null || { echo "valgrind: $$t FAILED"; exit 1; }; \
	done; echo "valgrind: all C tests clean"

fuzz-short:
	CC=clang cmake -S . -B build-fuzz -G Ninja -DVRAM_FUZZ=ON \
	  -DVRAM_SANITIZE=address,undefined >/dev/null
	cmake --build build-fuzz -j$(JOBS)
	@for f in build-fuzz/fuzz_*; do \
	  name=$$(basename $$f); corpus=fuzz/corpus/$${name#fuzz_}; \
	  echo "fuzz: $$name for $(FUZZ_SECONDS)s on $$corpus"; \
	  mkdir -p build-fuzz/work-$$name; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build-fuzz/ \
	    build-fuzz/work-$$name $$corpus 2>&1 | tail -3 || exit 1; \
	done

test-python: build
	VRAM_LIBRARY=$(CURDIR)/build/libvram.so .venv/bin/python -m pytest tests/python

# The Python package's types (settings in pyproject.toml).
typecheck:
	.venv/bin/python -m mypy

app: setup
	.venv/bin/python -m genesis.apps.wanvideo_gradio_app

# C benchmarks, then the CPU report (docs/BENCHMARKS.md). The GPU benchmark
# is bench/gpu_bench.py, run on a machine with a GPU (bench/README.md).
bench: setup build
	cmake --build build --target benches -j$(JOBS)
	.venv/bin/python bench/cpu_bench.py --build build

clean:
	rm -rf build build-clang build-asan build-tsan build-fuzz
