# mvisor: the two commands of README.md.
#   make demo   boot the demo VM with its serial console on this terminal
#   make test   lint, typecheck and run every test (what CI runs)
# Both install what they need on a fresh Debian 12 root machine.

APT_PACKAGES := build-essential python3 linux-source-6.1 bc bison flex libelf-dev libssl-dev cpio \
  busybox-static qemu-system-x86 qemu-utils seabios acpica-tools dmidecode nasm socat xz-utils patch \
  xorriso mtools dosfstools kmod file

.PHONY: deps apt npm build guests demo test lint typecheck bench install clean

deps: apt npm build

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v node >/dev/null || { echo "Node.js 20.12 or newer is required (https://nodejs.org; Debian 12's nodejs is 18)"; exit 1; }
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 12) ? 0 : 1)' || \
	  { echo "Node.js 20.12 or newer is required; this is $$(node --version) (https://nodejs.org; Debian 12's nodejs is 18)"; exit 1; }

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

npm: node_modules/.package-lock.json

# The addon is rebuilt only when native/ or binding.gyp changed (or Node's version: node-gyp's headers).
ADDON := build/Release/mvisor_kvm.node
$(ADDON): binding.gyp $(wildcard native/*) node_modules/.package-lock.json
	npx node-gyp rebuild -j 2 >/dev/null

build: npm $(ADDON)
	npx tsc -p tsconfig.build.json
	node scripts/oclif-manifest.mjs >/dev/null
	node scripts/validators.mjs >/dev/null
	node scripts/bundle.mjs >/dev/null

guests: apt
	./guests/build.sh > /dev/null

demo: deps guests
	./scripts/demo.sh

lint: npm
	npx eslint .
	npx prettier --check .

typecheck: npm
	npx tsc --noEmit -p tsconfig.json

# Where /dev/kvm is missing, the KVM tests run inside the nested test host
# (test/kvm-host/, test/runner/): README.md, "Machines without /dev/kvm".
test: deps guests lint typecheck
	node dist/test/runner/main.js

# Benchmarks: mvctl at scale here (no KVM needed); the VMM ones where KVM runs
# guests: here, or inside the nested test host ("nested" in every figure).
bench: deps guests
	node dist/bench/plan.js
	./scripts/with-kvm.sh sh -c 'node dist/bench/startup.js && node dist/bench/exit.js && node dist/bench/boot.js'

# mvctl and mvisor on PATH (symbolic links into this tree, in $(PREFIX)/bin).
PREFIX ?= /usr/local
install: build
	mkdir -p $(PREFIX)/bin
	ln -sf $(CURDIR)/bin/mvctl.js $(PREFIX)/bin/mvctl
	ln -sf $(CURDIR)/bin/mvisor.js $(PREFIX)/bin/mvisor
	@echo "mvctl and mvisor are in $(PREFIX)/bin"

clean:
	rm -rf build dist
