# The entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
BUILD_DIR := build/release
FUZZ_DIR := build/fuzz
JOBS ?= $(shell nproc)
FUZZ_TARGETS := definition_fuzz patch_fuzz storage_event_fuzz

.PHONY: bootstrap build test test-unit fuzz-smoke run bench tidy clean

bootstrap:
	@scripts/bootstrap

$(BUILD_DIR)/build.ninja:
	cmake --preset release

build: $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)
	@ln -sf release/venture build/venture

# Every test: unit, property, simulation, CLI integration, tidy, fuzz corpus replays, and a short
# libFuzzer smoke run of every fuzz target (clang, `fuzz` preset).
test: bootstrap build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) fuzz-smoke

fuzz-smoke:
	@test -f $(FUZZ_DIR)/build.ninja || cmake --preset fuzz
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target $(FUZZ_TARGETS)
	cd $(FUZZ_DIR) && ctest --output-on-failure -L fuzz

run: bootstrap build
	@echo "Venture: embedded server with data in ./venture-data (Ctrl-C stops it)."
	@echo "Validate an example:  build/venture workflow validate examples/*.json"
	@echo "Benchmark:            build/venture bench A --runs 1000 --steps 10"
	build/venture serve --data-dir ./venture-data

bench: build
	@for w in A B C L; do build/venture bench $$w -o json; done

tidy:
	python3 scripts/tidy_check.py .

clean:
	rm -rf build
