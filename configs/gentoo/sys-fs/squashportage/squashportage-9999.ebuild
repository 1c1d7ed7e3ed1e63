# Copyright 2026 Gentoo Authors
# Distributed under the terms of the GNU General Public License v2

EAPI=8

inherit git-r3 go-module linux-info systemd

DESCRIPTION="Portage tree in a squashfs image with an overlay, persisted crash-safely"
HOMEPAGE="https://github.com/squashportage/squashportage"
EGIT_REPO_URI="https://github.com/squashportage/squashportage.git"

# The Go modules built in: klauspost/compress (Apache-2.0 BSD MIT),
# pierrec/lz4 and ulikunitz/xz (BSD), golang.org/x/sys (BSD). Add the
# project's own license here once the repository carries one.
LICENSE="Apache-2.0 BSD MIT"
SLOT="0"
# Live ebuild: no keywords.

# The tests mount images on loop devices and fail, by design, without
# root; run them from a checkout with `make test` instead.
RESTRICT="test"

# go.mod asks for Go 1.26.
BDEPEND=">=dev-lang/go-1.26"

# squashfs with xattrs (Portage trees carry none, but other trees may),
# the loop driver and overlayfs; gzip is what `squashportage convert`
# writes by default; the other compressors are only needed if chosen.
CONFIG_CHECK="~SQUASHFS ~SQUASHFS_ZLIB ~SQUASHFS_XATTR ~BLK_DEV_LOOP ~OVERLAY_FS ~TMPFS"

src_unpack() {
	git-r3_src_unpack
	go-module_live_vendor
}

src_compile() {
	# Static (no cgo, not PIE) so the same binary can be /init of the
	# initramfs; -buildmode=exe overrides a -buildmode=pie in GOFLAGS.
	CGO_ENABLED=0 ego build -trimpath -buildmode=exe -o squashportage ./init
}

src_install() {
	dobin squashportage

	newinitd configs/openrc/init.d/squashportage squashportage
	newconfd configs/openrc/conf.d/squashportage squashportage

	systemd_dounit configs/systemd/squashportage.service
	# Keep squashportage's own mounts until its ExecStop has persisted
	# them (see the comments in the unit).
	insinto "$(systemd_get_systemunitdir)"/run-squashportage-.mount.d
	doins configs/systemd/run-squashportage-.mount.d/squashportage.conf
	insinto "$(systemd_get_systemunitdir)"/var-db-repos-.mount.d
	doins configs/systemd/var-db-repos-.mount.d/squashportage.conf

	exeinto /etc/portage/repo.postsync.d
	doexe configs/portage/repo.postsync.d/50-squashportage

	insinto /etc
	newins configs/squashportage.conf.example squashportage.conf

	dodoc README.md boot/README.md
	# A fleet (README: "A fleet"): the client's fetch script, its systemd
	# timer and config, the publisher's postsync hook; examples to copy.
	docinto fleet
	dodoc configs/fleet/squashportage-fetch configs/fleet/squashportage-fetch.service \
		configs/fleet/squashportage-fetch.timer configs/fleet/fleet.conf.example \
		configs/fleet/60-squashportage-publish
}

pkg_postinst() {
	elog "To move the Gentoo repository into an image:"
	elog "  mkdir -p /var/cache/squashportage"
	elog "  squashportage convert --remove-source /var/db/repos/gentoo /var/cache/squashportage/gentoo.sqfs"
	elog "then add the spec it prints to /etc/squashportage.conf and enable the service:"
	elog "  rc-update add squashportage default      (OpenRC)"
	elog "  systemctl enable --now squashportage     (systemd)"
	elog "or boot with the squashportage initramfs and squashportage=SPEC on the"
	elog "kernel command line. Keep DISTDIR and PKGDIR outside the tree."
	elog
	elog "squashportage does not install mksquashfs/unsquashfs links, so as not to"
	elog "shadow sys-fs/squashfs-tools. To use its own, link them yourself, e.g.:"
	elog "  ln -s /usr/bin/squashportage /usr/local/bin/mksquashfs"
}
