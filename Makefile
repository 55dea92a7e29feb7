# capbroker: `make demo` runs the demo, `make test` the whole suite,
# `make bench` the benchmarks. Each installs missing Debian packages first.
BAZEL ?= bazel
DEB_PACKAGES := bazel-bootstrap capnproto libcapnp-dev libabsl-dev \
	libgtest-dev libgmock-dev libbenchmark-dev libseccomp-dev
BENCH_PACKAGES := bubblewrap

.PHONY: all deps build demo test bench clean

all: build

# Installs what is missing; does nothing (and needs no network) otherwise.
deps:
	@tests/tools/install_packages.sh $(DEB_PACKAGES)

build: deps
	$(BAZEL) build //...

demo: deps
	$(BAZEL) build //broker:capbrokerd //sdk/capctl:capctl //services/...
	tests/demo/demo.sh bazel-bin

test: deps
	tests/tools/run_tests.sh

bench: deps
	@tests/tools/install_packages.sh $(BENCH_PACKAGES)
	$(BAZEL) run //broker/server:dispatch_bench
	$(BAZEL) run //tests/bench:broker_bench
	$(BAZEL) run //tests/bench:service_bench

clean:
	$(BAZEL) clean
