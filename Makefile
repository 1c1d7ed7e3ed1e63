# squashportage build and test entry points. Tests need root: they mount
# squashfs images on loop devices in a private mount namespace.

GO       ?= go
BIN      := bin/squashportage
# Set FUZZ= (empty) to run `make test` without the bounded fuzz run.
FUZZ     ?= fuzz
FUZZTIME ?= 60s
# Fuzz targets as package:Func pairs; add new ones here.
FUZZ_TARGETS ?= ./squash:FuzzReader
BENCH_SCALE ?= 1

# make initramfs: bin/initramfs.cpio.gz with squashportage as /init. With
# KMODULES=/lib/modules/RELEASE it also carries squashfs, loop, overlay and
# MODULES (e.g. MODULES="virtio_pci virtio_blk"), with their dependencies;
# without, the kernel must have them built in. BUSYBOX= (empty) leaves out
# the rescue shell; the default takes /bin/busybox if it is static.
INITRAMFS ?= bin/initramfs.cpio.gz
KMODULES  ?=
MODULES   ?=
BUSYBOX   ?= auto

.PHONY: build test vet unit fuzz bench clean initramfs e2e

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN) ./init

test: vet unit $(FUZZ) e2e

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 30m ./...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); \
	done

initramfs: build
	$(GO) run ./boot/cmd/mkinitramfs -o $(INITRAMFS) -init $(BIN) -busybox "$(BUSYBOX)" \
		$(if $(KMODULES),-kmodules $(KMODULES)) -modules "$(MODULES)"

# Boots a Debian kernel under QEMU with our initramfs (boot/e2e); needs
# qemu-system-x86, busybox-static, e2fsprogs, kmod, and fails without them.
e2e: build
	$(GO) vet -tags e2e ./boot/e2e
	E2E_BINARY=$(abspath $(BIN)) $(GO) test -tags e2e -count=1 -timeout 20m -run E2E -v ./boot/e2e

# make demo: the README's walk-through (testdata/demo). Installs what it
# needs with apt-get when missing (root, Debian), then builds a
# Portage-like image with our writer, boots it twice under QEMU, persists a
# change in the first boot and shows it in the second. Everything lands in
# bin/demo; the kernel is cached like e2e's (E2E_CACHE).
DEMO_PKGS ?= qemu-system-x86 busybox-static e2fsprogs kmod squashfs-tools
.PHONY: demo
demo: build
	@missing=; for p in $(DEMO_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q ' installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then \
		echo "==> apt-get:$${missing:- no package missing, updating the package lists}"; \
		apt-get update -qq && \
		{ [ -z "$$missing" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; }; \
	fi
	$(GO) run ./testdata/demo -bin $(BIN)

# Our writer against mksquashfs (Portage-like tree and Linux sources, four
# compressors), persist against a full rebuild and unsquashfs against
# unsquashfs; see testdata/bench.
# BENCH_ARGS passes flags, e.g. BENCH_ARGS="-trees portage -comps gzip".
bench: build
	@command -v mksquashfs >/dev/null && command -v rsync >/dev/null || \
		apt-get install -y --no-install-recommends squashfs-tools rsync xz-utils
	$(GO) run ./testdata/bench -bin $(BIN) -scale $(BENCH_SCALE) $(BENCH_ARGS)

clean:
	rm -rf bin
