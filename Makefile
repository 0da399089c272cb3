# berth — two commands set up a fresh Debian machine: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := build

RUN_PKGS  := runc conmon containernetworking-plugins iproute2 iptables util-linux protobuf-compiler zstd attr coreutils gcc libc6-dev
TEST_PKGS := docker-registry busybox-static skopeo umoci jq openssl procps apache2-utils systemd prometheus
BENCH_PKGS := containerd
CNI_CONF_DIR ?= /etc/cni/net.d
TSC := node_modules/.bin/tsc
PROTOC_GEN := node_modules/.bin/protoc-gen-ts_proto
TS_PROTO_OPTS := outputServices=grpc-js,outputServices=generic-definitions,esModuleInterop=true,importSuffix=.js,forceLong=bigint,env=node,useOptionals=none

# Installs only the Debian packages that are missing (apt-get update once, when needed).
define apt_ensure
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
endef

.PHONY: deps deps-test deps-bench build gen native run test bench critest critest-bin soak storm fuzz clean cni-default install install-files uninstall

deps:
	$(call apt_ensure,$(RUN_PKGS))
	@# A symlinked node_modules (a git worktree sharing another checkout's) is left alone.
	@if [ ! -L node_modules ] && { [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; }; then \
	  npm ci --no-audit --no-fund; fi

deps-test: deps
	$(call apt_ensure,$(TEST_PKGS))

deps-bench: deps-test
	$(call apt_ensure,$(BENCH_PKGS))

src/gen/api.ts: proto/api.proto $(PROTOC_GEN)
	@mkdir -p src/gen
	protoc --plugin=$(PROTOC_GEN) --ts_proto_out=src/gen --ts_proto_opt=$(TS_PROTO_OPTS) -I proto proto/api.proto

gen: src/gen/api.ts

# The N-API addon (src/native): plain cc against the installed Node headers, no node-gyp download.
NODE_INCLUDE ?= $(shell node -p "require('path').resolve(process.execPath, '../../include/node')")
# berth_native.c registers the exports; native_*.c hold them by concern, native.h what they share.
NATIVE_SRC := src/native/berth_native.c $(wildcard src/native/native_*.c)
dist/native/berth_native.node: $(NATIVE_SRC) src/native/native.h
	@mkdir -p dist/native
	$(CC) -O2 -Wall -Wextra -Werror -shared -fPIC -fvisibility=hidden -DNODE_GYP_MODULE_NAME=berth_native -I$(NODE_INCLUDE) -o $@ $(NATIVE_SRC)

# berth-exec: the small parent ExecSync's processes get (src/native/berth_exec.c).
dist/native/berth-exec: src/native/berth_exec.c
	@mkdir -p dist/native
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

native: dist/native/berth_native.node dist/native/berth-exec

build: deps src/gen/api.ts native
	$(TSC) -p .

# Installs the default bridge network (berth0, 10.88.0.0/16) when the CNI conf dir has none.
cni-default:
	@mkdir -p $(CNI_CONF_DIR)
	@if ! ls $(CNI_CONF_DIR)/*.conf $(CNI_CONF_DIR)/*.conflist $(CNI_CONF_DIR)/*.json >/dev/null 2>&1; then \
	  install -m 0644 docs/cni/10-berth.conflist $(CNI_CONF_DIR)/10-berth.conflist; \
	  echo "installed $(CNI_CONF_DIR)/10-berth.conflist"; fi

# The built daemon under $(PREFIX)/lib/berth, $(PREFIX)/bin/berthd, the systemd unit, and
# /etc/berth/berth.toml and /etc/crictl.yaml when absent (deploy/install.sh; DESTDIR honoured).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL_VARS = DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" UNITDIR="$(UNITDIR)"

install: build
	@$(INSTALL_VARS) deploy/install.sh install

# What install does, without building first (the tests: they must not rewrite dist/ while other tests read it).
install-files:
	@$(INSTALL_VARS) deploy/install.sh install

# Removes exactly what install listed in $(PREFIX)/lib/berth/install-manifest.
uninstall:
	@$(INSTALL_VARS) deploy/install.sh uninstall

run: build cni-default
	exec ./bin/berthd $(BERTHD_FLAGS)

# The spec report goes to the terminal; a TAP copy gives the closing count line.
test: deps-test build
	@rc=0; node --test --test-reporter=spec --test-reporter-destination=stdout \
	  --test-reporter=tap --test-reporter-destination=dist/test-results.tap \
	  $$(find dist -name '*.test.js' | sort) || rc=$$?; \
	p=$$(grep -E '^# pass ' dist/test-results.tap | awk '{print $$3}'); \
	f=$$(grep -E '^# fail ' dist/test-results.tap | awk '{print $$3}'); \
	k=$$(grep -E '^# skipped ' dist/test-results.tap | awk '{print $$3}'); \
	echo "tests: $${p:-0} passed, $${f:-0} failed, $${k:-0} skipped"; exit $$rc

# Random and malformed requests against a real berthd (bounded: FUZZ_CASES, reproducible: FUZZ_SEED).
fuzz: deps-test build
	node dist/test/fuzz/fuzz.js

# 8 clients cycling pods and containers for SOAK_SECONDS (default 300): errors, leaks, berthd RSS.
soak: deps-test build
	node dist/test/soak/soak.js

# kubelet's restart storm: STORM_PODS (100) pods, STORM_CONTAINERS (200) containers, STORM_CLIENTS (20) clients at once.
storm: deps-test build
	node dist/test/soak/storm.js

# critest (cri-tools) against berth; test/critest/README.md. CRITEST_RUNTIME=containerd runs the baseline,
# CRITEST_OUT=dir keeps the logs and reports, CRITEST_FLAGS passes more (--focus RE, --skip RE, --benchmark, --verbose).
critest-bin:
	@if [ -z "$(CRITEST)" ]; then \
	  echo "make critest needs CRITEST=/path/to/critest. critest is not shipped here: build it from a checkout of"; \
	  echo "kubernetes-sigs/cri-tools at tag v1.26.1, v1.29.0 (golang-go) or v1.32.0 (Go 1.23: golang-1.23-go) with 'make critest'; the binary is"; \
	  echo "build/bin/linux/amd64/critest. Then: make critest CRITEST=.../critest"; exit 2; fi
	@test -x "$(CRITEST)" || { echo "CRITEST=$(CRITEST) is not an executable file"; exit 2; }

critest: critest-bin deps-test build
	$(if $(filter containerd,$(CRITEST_RUNTIME)),$(call apt_ensure,containerd))
	node dist/test/critest/run.js --critest "$(CRITEST)" $(foreach r,$(or $(CRITEST_RUNTIME),berth),--runtime $(r)) \
	  $(if $(CRITEST_OUT),--out "$(CRITEST_OUT)") $(CRITEST_FLAGS)

# berth vs containerd 1.6 side by side (bench/REPORT.md); needs root; never part of `make test` or CI.
bench: deps-bench build
	node dist/bench/main.js $(BENCH_FLAGS)

clean:
	rm -rf dist src/gen
