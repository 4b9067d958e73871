# Thin wrapper: CMake builds, ctest tests. See README.md.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG     ?= conf/bt2cd.lua

.PHONY: all deps build run test asan fuzz bench clean lint

all: build

deps:
	@tools/deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/bt2cd --config $(CONFIG)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DBT2C_SANITIZE=ON

asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

# Benchmarks: results go to docs/BENCHMARKS.md (see tools/bench/README.md).
bench: build
	tools/bench/run

# Coverage-guided fuzzing with clang's libFuzzer, FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DBT2C_SANITIZE=ON -DBT2C_LIBFUZZER=ON
	cmake --build build-fuzz -j $(JOBS) --target fuzz_envelope fuzz_json fuzz_handshake fuzz_wsclient
	for t in envelope json handshake wsclient; do \
	  mkdir -p build-fuzz/corpus-$$t && \
	  build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus-$$t fuzz/corpus/$$t || exit 1; \
	done

lint:
	luacheck lua policies spec tools

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
