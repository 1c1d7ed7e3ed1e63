# squashportage build and test entry points. Tests need root: they mount
# squashfs images on loop devices in a private mount namespace.

GO       ?= go
BIN      := bin/squashportage
# Set FUZZ= (empty) to run `make test` without the bounded fuzz run.
FUZZ     ?= fuzz
FUZZTIME ?= 60s
# Fuzz targets as package:Func pairs; add new ones here.
FUZZ_TARGETS ?= ./squash:FuzzReader ./squash/codec/deflate:FuzzEncode ./squash/codec/deflate:FuzzInflate
BENCH_SCALE ?= 1

# make initramfs: bin/initramfs.cpio.gz with squashportage as /init and
# u-root's commands (the ones go.mod pins as tools, built by u-root's
# builder, go tool u-root) as the rescue toolset, gosh as /bin/sh. With
# KMODULES=/lib/modules/RELEASE it also carries squashfs, loop, overlay and
# MODULES (e.g. MODULES="virtio_pci virtio_blk"), with their dependencies;
# without, the kernel must have them built in. BUSYBOX=/bin/busybox adds a
# static busybox (its sh becomes /bin/sh); UROOT= (empty) leaves u-root out.
INITRAMFS ?= bin/initramfs.cpio.gz
KMODULES  ?=
MODULES   ?=
BUSYBOX   ?=
UROOT     ?= 1

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
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s; \
	done

initramfs: build
	$(GO) run ./boot/cmd/mkinitramfs -o $(INITRAMFS) -init $(BIN) -busybox "$(BUSYBOX)" -uroot=$(if $(UROOT),true,false) \
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

# make bench: our writer against the peers (squashfs-tools 4.7.x built
# from upstream's source into BENCH_DIR, never committed; squashfs-tools-ng's
# gensquashfs and Debian's mksquashfs 4.5.1 from Debian's packages), persist,
# delta layers, our unsquashfs against Debian's, and images made from a tar
# archive (-tar; squashfs-tools-ng's tar2sqfs); see testdata/bench.
# Give a peer's binary to skip its build: make bench MKSQUASHFS_47=/path;
# or another clone source: SQUASHFS_TOOLS_GIT=/path/to/a/mirror.
# BENCH_ARGS passes flags, e.g. BENCH_ARGS="-trees portage -comps gzip".
BENCH_DIR          ?= /var/tmp/squashportage-bench
SQUASHFS_TOOLS_GIT ?= https://github.com/plougher/squashfs-tools
SQUASHFS_TOOLS_TAG ?= 4.7.5
MKSQUASHFS_47      ?= $(BENCH_DIR)/peers/squashfs-tools-$(SQUASHFS_TOOLS_TAG)/squashfs-tools/mksquashfs
GENSQUASHFS        ?= /usr/bin/gensquashfs
MKSQUASHFS         ?= /usr/bin/mksquashfs

$(BENCH_DIR)/peers/squashfs-tools-%/squashfs-tools/mksquashfs:
	apt-get install -y --no-install-recommends build-essential git zlib1g-dev liblzma-dev liblzo2-dev liblz4-dev libzstd-dev
	rm -rf $(BENCH_DIR)/peers/squashfs-tools-$*
	git clone --depth 1 -b $* $(SQUASHFS_TOOLS_GIT) $(BENCH_DIR)/peers/squashfs-tools-$*
	$(MAKE) -C $(BENCH_DIR)/peers/squashfs-tools-$*/squashfs-tools XZ_SUPPORT=1 LZO_SUPPORT=1 LZ4_SUPPORT=1 ZSTD_SUPPORT=1

bench: build $(MKSQUASHFS_47)
	@command -v mksquashfs >/dev/null && command -v gensquashfs >/dev/null && command -v rsync >/dev/null || \
		apt-get install -y --no-install-recommends squashfs-tools squashfs-tools-ng rsync xz-utils
	$(GO) run ./testdata/bench -dir $(BENCH_DIR) -bin $(BIN) -scale $(BENCH_SCALE) \
		-peers "4.7=$(MKSQUASHFS_47),gensquashfs=$(GENSQUASHFS),debian-4.5=$(MKSQUASHFS)" $(BENCH_ARGS)

clean:
	rm -rf bin
