# capbroker: `make demo` runs the demo, `make test` the whole suite,
# `make bench` the benchmarks. Each installs missing Debian packages first.
BAZEL ?= bazel
DEB_PACKAGES := bazel-bootstrap capnproto libcapnp-dev libabsl-dev \
	libgtest-dev libgmock-dev libbenchmark-dev libseccomp-dev
BENCH_PACKAGES := bubblewrap

.PHONY: all deps build demo test bench sanitize clean

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
	$(BAZEL) run //broker/policy:policy_parser_bench
	$(BAZEL) run //tests/bench:broker_bench
	$(BAZEL) run //tests/bench:service_bench

# The suite under the sanitizers. It builds a copy of the tree, so that Bazel
# gives it an output base of its own and the cache of `make test` survives.
# Slow (about 10 minutes on 2 cores); not part of `make test`.
SANITIZE_TREE := $(HOME)/.cache/capbroker-sanitize
sanitize: deps
	rm -rf $(SANITIZE_TREE) && mkdir -p $(SANITIZE_TREE)
	tar --exclude='./bazel-*' --exclude=./.git -cf - . | tar -xf - -C $(SANITIZE_TREE)
	cd $(SANITIZE_TREE) && $(BAZEL) test --config=sanitize //...

clean:
	$(BAZEL) clean
