# The entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
BUILD_DIR := build/release
FUZZ_DIR := build/fuzz
JOBS ?= $(shell nproc)
FUZZ_TARGETS := definition_fuzz patch_fuzz storage_event_fuzz request_fuzz egress_fuzz

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
	@echo "Venture: the embedded server on http://127.0.0.1:8000, data in ./venture-data (Ctrl-C stops it)."
	@echo "In another terminal, run an example and watch it:"
	@echo "    build/venture run start examples/hello.json -f"
	@echo "The CLI reads the admin token from ./venture-data/admin.token; the API is in docs/api.md."
	build/venture serve --data-dir ./venture-data

bench: build
	@for w in A B C L; do build/venture bench $$w -o json; done

tidy:
	python3 scripts/tidy_check.py .

clean:
	rm -rf build
