# crisp — a Kubernetes CRI runtime in Swift. `make run` and `make test` are the two
# commands a newcomer needs; both install what they need on a fresh Debian 12.

SWIFT        ?= swift
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
CONFIG       ?= /etc/crisp/crisp.toml
DAEMONS      := cri-frontd imaged netd shimd crisp-pause crisp-launcher
RELEASE_DIR   = .build/release
DEBUG_DIR     = .build/debug

# Debian packages: C libraries (NNG, libcap, libseccomp, libarchive for layers, SQLite
# for the image database, zlib for checked gzip), runc, the CNI plugins and iptables (portmap),
# systemd-analyze for the unit tests, nng-utils for debugging IPC; iproute2,
# util-linux (nsenter, swapoff) and python3 are used by the tests; docker-registry,
# busybox-static, zstd, pigz, openssl and apache2-utils (htpasswd) make the tests' local
# registries and images; skopeo and umoci are the pull benchmark's peers.
# python3-websocket (websocket-client) is the streaming tests' WebSocket client.
APT_PACKAGES := libnng-dev libmbedtls-dev nng-utils libcap-dev libseccomp-dev libarchive-dev zlib1g-dev libsqlite3-dev runc systemd \
                containernetworking-plugins iptables iproute2 util-linux python3 \
                docker-registry busybox-static zstd pigz openssl apache2-utils skopeo umoci sqlite3 python3-websocket
# PyPI packages: the Python gRPC client of the interop test, and protoc for `make generate`.
PIP_PACKAGES := grpcio==1.85.3 grpcio-tools==1.85.1
# Where `make deps` unpacks kubectl for the streaming tests (StreamingTests read CRISP_KUBECTL).
KUBECTL_DIR  := /tmp/k8sclient

.PHONY: all deps build release run test conformance bench install uninstall generate format clean cni-config registries-config seccomp-profile

all: build

# Non-interactive, and an operator's own files (/etc/containers/registries.conf of
# podman, CRI-O or skopeo) are kept: dpkg asks no conffile question.
apt_install = missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $$missing; \
	fi
deps:
	@$(call apt_install,$(APT_PACKAGES))
	@python3 -c 'import grpc, grpc_tools' 2>/dev/null || python3 -m pip install --quiet --root-user-action=ignore $(PIP_PACKAGES)
	@# A real SPDY client for the streaming tests: Debian's kubectl 1.20, unpacked, not installed
	@# (a node's own kubectl stays untouched).
	@[ -x $(KUBECTL_DIR)/usr/bin/kubectl ] || (cd /tmp && apt-get download -qq kubernetes-client && \
	  dpkg -x kubernetes-client_*.deb $(KUBECTL_DIR) && rm -f kubernetes-client_*.deb)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Starts imaged, netd and cri-frontd in the foreground with $(CONFIG) (or the
# defaults when it does not exist); Ctrl-C stops them all.
run: release cni-config registries-config seccomp-profile
	deploy/crisp-run $(RELEASE_DIR) $(CONFIG)

# Every test: unit and component tests (IPC, config, Linux wrappers, the unpacker,
# registries.conf, the spec builder) in parallel; then, one at a time, everything that
# starts real daemons, runc, CNI plugins and registries (EndToEndTests, ShimdTests):
# on 2 cores, running those side by side starves them of time. Each test has its own
# temporary root, run_root, sockets, bridge and subnet.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --skip 'EndToEndTests|ShimdTests'
	$(SWIFT) test --skip-build --filter 'EndToEndTests|ShimdTests' --no-parallel

# The Kubernetes CRI validation suite (critest, cri-tools v1.36.0, built offline from
# $(SHARED_DIR)/cri-tools) against crisp started through deploy/crisp-run from the debug
# build `make test` made, with images built by umoci and served by a registry on
# 127.0.0.1 (Tests/Conformance/critest.sh). crictl from the same build is left at
# .build/cri-tools/crictl; a node's own crictl is never touched.
# catatonit is the test images' pause, gcc the nonewprivs image's program.
SHARED_DIR         ?= ../shared
CRI_TOOLS_DIR      := .build/cri-tools
CONFORMANCE_APT    := catatonit curl gcc libc6-dev python3-venv
conformance: build
	@$(call apt_install,$(CONFORMANCE_APT))
	bash $(SHARED_DIR)/cri-tools/build.sh $(CRI_TOOLS_DIR)
	bash Tests/Conformance/critest.sh $(DEBUG_DIR) $(CRI_TOOLS_DIR) $(SHARED_DIR) $(CRITEST_ARGS)

# The peer (containerd, Debian's) is installed by crisp-bench itself when missing;
# matplotlib draws the latency chart.
bench: deps
	@python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet --root-user-action=ignore matplotlib
	$(SWIFT) build -c release
	$(RELEASE_DIR)/crisp-bench --bin-dir $(RELEASE_DIR) $(if $(ONLY),--only $(ONLY))

install: release cni-config registries-config seccomp-profile
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)/etc/crisp $(DESTDIR)/etc/systemd/system $(DESTDIR)$(PREFIX)/share/doc/crisp
	for d in $(DAEMONS) crispctl; do install -m 0755 $(RELEASE_DIR)/$$d $(DESTDIR)$(BINDIR)/$$d; done
	install -m 0644 deploy/systemd/*.service deploy/systemd/*.target $(DESTDIR)/etc/systemd/system/
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/crisp/README.md
	@# An operator's configuration is never overwritten.
	[ -e $(DESTDIR)/etc/crisp/crisp.toml ] || install -m 0644 deploy/crisp.toml $(DESTDIR)/etc/crisp/crisp.toml
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

uninstall:
	for d in $(DAEMONS) crispctl; do rm -f $(DESTDIR)$(BINDIR)/$$d; done
	rm -f $(DESTDIR)/etc/systemd/system/crisp-*.service $(DESTDIR)/etc/systemd/system/crisp.target

# A fresh node gets a working pod network (bridge crisp0, 10.86.0.0/16); an
# operator's own CNI configuration is never touched.
CNI_CONF_DIR ?= /etc/cni/net.d
cni-config:
	@mkdir -p $(DESTDIR)$(CNI_CONF_DIR)
	@if ls $(DESTDIR)$(CNI_CONF_DIR) | grep -qE '\.(conf|conflist|json)$$'; then \
	  echo "cni: keeping the configuration in $(CNI_CONF_DIR)"; \
	else \
	  install -m 0644 deploy/cni/10-crisp-bridge.conflist $(DESTDIR)$(CNI_CONF_DIR)/ && \
	  echo "cni: installed $(CNI_CONF_DIR)/10-crisp-bridge.conflist"; \
	fi

# Short names resolve through docker.io, as on a stock CRI-O node; an existing
# registries.conf (shared with podman, CRI-O, skopeo) is never touched.
REGISTRIES_CONF ?= /etc/containers/registries.conf
registries-config:
	@if [ -e $(DESTDIR)$(REGISTRIES_CONF) ]; then \
	  echo "registries: keeping $(REGISTRIES_CONF)"; \
	else \
	  install -D -m 0644 deploy/registries.conf $(DESTDIR)$(REGISTRIES_CONF) && \
	  echo "registries: installed $(REGISTRIES_CONF)"; \
	fi

# The RuntimeDefault seccomp profile containers get (frontd.seccomp_profile); an
# operator's edited copy is never overwritten.
seccomp-profile:
	@if [ -e $(DESTDIR)/etc/crisp/seccomp.json ]; then \
	  echo "seccomp: keeping /etc/crisp/seccomp.json"; \
	else \
	  install -D -m 0644 deploy/seccomp/default.json $(DESTDIR)/etc/crisp/seccomp.json && \
	  echo "seccomp: installed /etc/crisp/seccomp.json"; \
	fi

# The default configuration file is what `cri-frontd config` prints; a test checks it.
deploy/crisp.toml: build
	$(DEBUG_DIR)/cri-frontd config > $@

# Regenerates Shared/CRIAPI from api.proto (kubernetes/cri-api v0.36.3). Run by hand,
# never in CI: building the two protoc plugins takes minutes. Debian's protoc 3.21
# rejects api.proto ([debug_redact = true]); the protoc inside PyPI's grpcio-tools
# reads it unchanged.
PLUGIN_DIR := .build-protoc-plugins
generate: deps
	rm -rf $(PLUGIN_DIR) && git clone -q https://github.com/grpc/grpc-swift-protobuf.git $(PLUGIN_DIR)
	cd $(PLUGIN_DIR) && git checkout -q 2.4.1 && \
	  $(SWIFT) build --product protoc-gen-grpc-swift-2 && $(SWIFT) build --product protoc-gen-swift
	cd Shared/CRIAPI && python3 -m grpc_tools.protoc -I. \
	  --plugin=protoc-gen-swift=../../$(PLUGIN_DIR)/.build/debug/protoc-gen-swift \
	  --swift_out=Visibility=Public:. \
	  --plugin=protoc-gen-grpc-swift=../../$(PLUGIN_DIR)/.build/debug/protoc-gen-grpc-swift-2 \
	  --grpc-swift_out=Visibility=Public,Client=true,Server=true:. \
	  api.proto
	python3 Shared/CRIAPI/generate-defaults.py Shared/CRIAPI/api.grpc.swift Shared/CRIAPI/UnimplementedDefaults.swift

format:
	$(SWIFT) format --in-place --recursive --configuration .swift-format Package.swift Services Shared/CrispCore Shared/CrispConfig \
	  Shared/CrispIPC Shared/CrispLinux Shared/CrispDaemon Shared/CrispOCI Shared/CrispStorage Tests bench

clean:
	rm -rf .build $(PLUGIN_DIR)
