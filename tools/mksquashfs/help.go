package mksquashfs

import "github.com/squashportage/squashportage/squash/codec"

var helpText = `Usage: squashportage mksquashfs SOURCE... DEST [options] [-e EXCLUDE...]

Builds a SquashFS 4.0 image DEST from SOURCE files and directories. Options
follow mksquashfs 4.5, with some of 4.6 and 4.7's (-force-file-mode,
-max-depth, -xattrs-*, -repro, ...), and come after SOURCE... DEST. A single
SOURCE directory becomes the image root; with several sources (or files, or
-keep-as-directory) each becomes an entry of the root named after its last
path component, repeated names getting _1, _2, ... suffixes. Entries are
stored sorted by name, so the same input always gives the same image.

With -tar, the one SOURCE is - and the image is made from the uncompressed
tar archive on standard input, without unpacking it:
  xzcat gentoo-latest.tar.xz |
    squashportage mksquashfs - gentoo.sqfs -tar -strip-components 1
As with mksquashfs -tar, the root and any directory the archive lists
only by what lies below it get mode 0777 (root) or 0755, your ids and the
current time (a ./ entry is ignored; -root-* set the root), and the image
has tails in fragments and no export table unless -no-tailends or
-exports say otherwise. File contents are held in a temporary file in
TMPDIR while the archive is read (where /tmp is a small tmpfs, point
TMPDIR at a disk). Excludes do not apply to archives.
  -ignore-zeros           read on past the end of the archive: several
                          archives concatenated (cat a.tar b.tar |)
  -numeric-owner          keep the archive's uids and gids; by default the
                          user and group names it records are looked up
                          here, and the ids they have here used
  -default-mode MODE      the permissions (octal, or a symbolic change of
                          0755) of directories the archive implies without
                          listing them, and of the root (with any source; a
                          change of its own mode; -root-mode wins); the
                          default is 0755
  -default-uid USER, -default-gid GROUP
                          their owner and group, and the root's (default:
                          yours)
  -strip-components N     (ours, with -tar) drop the first N components of
                          the archive's names, and entries with no more
                          than N, as tar --strip-components does: 1 makes
                          a Portage snapshot's gentoo-YYYYMMDD/ the root

With -cpiostyle, the one SOURCE is - and standard input lists the files to
store, one a line, as find(1) prints them (-cpiostyle0: NUL-terminated, as
find -print0 does): each is stored at its whole path (a leading / or ./
dropped) with the directories above it, a directory without what is below
it; the root is the current directory (or /, for absolute names). With
-no-strip (or -tarstyle), each SOURCE is stored at its whole path that way
too, with everything below it. A name with . or .. in it, or one given
twice, is refused; excludes do not apply.
  find /usr/src/linux -name '*.h' | squashportage mksquashfs - h.sqfs -cpiostyle

Compression:
  -comp NAME              compressor, one of those below (default gzip)
  -b SIZE                 data block size, a power of two from 4K to 1M;
                          K or M suffix allowed (default 128K)
  -X...                   the compressor's options:
` + codec.Help() + `  -noI, -noInodeCompression        store inode and directory tables
                                   uncompressed
  -noD, -noDataCompression         store data blocks uncompressed
  -noF, -noFragmentCompression     store fragment blocks uncompressed
  -noX, -noXattrCompression        store extended attributes uncompressed
  -noId, -noIdTableCompression     accepted and ignored
  -no-compression                  all of -noI, -noD, -noF and -noX

Layout:
  -no-fragments           never pack file tails into fragment blocks
  -always-use-fragments, -tailends
                          pack tails of files larger than a block into
                          fragment blocks too
  -no-tailends            give such tails a block of their own (default)
  -no-duplicates          do not look for identical files
  -no-fragment-grouping   pack tails into fragments strictly in directory
                          order, as mksquashfs does, instead of grouped by
                          kind of file within windows of three blocks:
                          images grow (gzip, Portage-like tree: 6.6%); reads in
                          directory order are as fast either way
  -exports                make the image exportable via NFS (default)
  -no-exports             leave out the NFS export table
  -block-sums             record a CRC-32C of every data and fragment block
                          after the image's 4K padding (default), where the
                          kernel and other tools never look: the first
                          persist from this image reads each reused block
                          once instead of decompressing it all (the first
                          persist from an image without them decompresses
                          every block it keeps, once)
  -no-block-sums          leave the record out: DEST ends at the padding, as
                          mksquashfs's does
  -nopad                  do not pad DEST to a multiple of 4K, for images
                          embedded in other files: the kernel does not
                          mount such a file through a loop device as it is
                          (nor mksquashfs's); implies -no-block-sums
  -no-sparse              store blocks of zeros as data instead of as holes
                          that take no space
  -sort FILE              lay the files' data out by priority, higher first
                          (e.g. what a boot reads first together): FILE has
                          "PATH PRIORITY" lines, PATH a file or a directory
                          (all below it), as an exclude's path is taken;
                          PRIORITY -32768 to 32767, 0 for unlisted files;
                          within one priority the order is the reverse of
                          the directory order, as mksquashfs has it
  -offset SIZE, -o SIZE   start the image SIZE bytes into DEST (K, M or G
                          suffix allowed), leaving zeros before it, for a
                          header written later; mount it with
                          mount -o loop,offset=SIZE, read it with
                          unsquashfs -o SIZE
  -xattrs                 store extended attributes (default); only the
                          user., trusted. and security. namespaces
  -no-xattrs              do not store extended attributes
  -noappend               overwrite DEST if it exists. Without it, an
                          existing image in DEST is appended to: see
                          "Appending" below
  -root-becomes NAME      when appending, keep the image's root whole as
                          directory NAME of the new root instead of adding
                          the sources to it

Selecting files:
  -keep-as-directory      with a single SOURCE directory, make it an entry
                          of the root instead of the root itself
  -p DEFINITION           add a pseudo file (quote it: one argument); may be
                          repeated. NAME TYPE [TIME] MODE UID GID [MORE]:
                            NAME d MODE UID GID               directory
                            NAME m MODE UID GID               new mode and owner
                                                              of a source entry
                            NAME b MODE UID GID MAJOR MINOR   block device
                            NAME c MODE UID GID MAJOR MINOR   character device
                            NAME f MODE UID GID COMMAND       file: the output of
                                                              /bin/sh -c COMMAND
                            NAME s MODE UID GID TARGET        symbolic link
                            NAME i MODE UID GID s|f           socket or FIFO
                          Upper-case types (D, M, B, C, F, S, I) take a TIME
                          in seconds since 1970 before MODE; the lower-case
                          ones get the current time. MODE is octal, UID and
                          GID numbers or names; quote or backslash-escape
                          spaces in NAME. Its directory must exist in the
                          sources or be defined first. An entry already in
                          the sources (for all but m) is left as it is,
                          with a warning. Also L (NAME L OTHER: a hard
                          link to OTHER) and R (a file whose data follows
                          the definitions, as unsquashfs -pf writes them);
                          not l.
  -pd "d MODE UID GID", -pd "D TIME MODE UID GID", -pseudo-dir ...
                          make the directories a pseudo definition's NAME
                          lacks with these attributes, instead of failing
  -pseudo-override        pseudo definitions' owners and modes stand over
                          -all-root, -force-uid/-gid, -force-file/dir-mode
  -pf FILE                add the pseudo file definitions in FILE, one a
                          line (a trailing \ continues it; # comments)
  -one-file-system        leave out mount points (and all below them) and
                          files on another filesystem than their directory,
                          with a warning each: e.g. / without /proc and /sys
                          (as mksquashfs 4.5 does; 4.6 and later keep each
                          mount point as an empty directory)
  -one-file-system-x      the same (4.6's name for leaving them out)
  -max-depth N            descend at most N levels of directories: 0 stores
                          the root alone, 1 its entries (directories among
                          them empty)
  -xattrs-exclude REGEX   leave out the extended attributes whose names
                          match REGEX (e.g. '^user\.'); may be repeated
  -xattrs-include REGEX   store only those whose names match (and no
                          -xattrs-exclude does); may be repeated
  -xattrs-add NAME=VALUE  add the attribute to every entry (user.* ones to
                          files and directories only); VALUE as given, or
                          base64 after 0s, hex after 0x, or with \NNN octal
                          escapes after 0t; may be repeated
  -no-hardlinks           store each name of a hard-linked file as a file of
                          its own (duplicate detection still shares the data)
  -e EXCLUDE...           leave out these files; takes all remaining
                          arguments, so it must come last
  -ef FILE                leave out the files listed in FILE, one per line
  -wildcards              excludes are shell patterns (*, ?, [...]) over
                          paths in the image, matched a directory level at a
                          time; "... PATTERN" matches in any directory, and a
                          "..." path component matches any number of levels
  -regex                  excludes are regular expressions, one per path
                          component
                          Without -wildcards/-regex an exclude names a file:
                          paths starting with /, ./ or ../ are taken from the
                          current directory, others from each SOURCE.

Ownership and times:
  -all-root, -root-owned  make every file owned by root (uid and gid 0)
  -force-uid USER         set every file's owner (number or user name)
  -force-gid GROUP        set every file's group (number or group name)
  -all-time TIME          set every file's time (seconds since 1970)
  -inode-time TIME        the same as -all-time
  -force-file-mode MODE   change every non-directory's permissions (symlinks
                          too); MODE is octal, or symbolic as chmod's
                          ([ugoa]*[+-=][rwxXst]*, or [+-=] and one of u, g,
                          o; comma-separated), but without u, g, o or a only
                          rwx change, and no umask applies
  -force-dir-mode MODE    the same for every directory, the root too (from
                          its own mode: -root-mode is then ignored)
  -uid-gid-offset N       add N to every uid and gid, after the options above
  -root-mode MODE         set the root directory's permissions (octal)
  -root-uid USER          set the root directory's owner (number or name)
  -root-gid GROUP         set the root directory's group (number or name)
  -root-time TIME         set the root directory's time (seconds since 1970)
                          The options above for every file override these.
  -mkfs-time TIME, -fstime TIME
                          set the image creation time (default: now); TIME
                          "inode" is the latest time of the image's entries
  -repro                  -mkfs-time inode: the image depends on its
                          sources only
  -repro-time TIME        -all-time TIME -mkfs-time TIME
                          SOURCE_DATE_EPOCH in the environment sets the
                          creation time and clamps later file times to it;
                          it cannot be combined with the options above that
                          set times.

Running:
  -processors N           compress with N goroutines (default: all CPUs)
  -mem SIZE               accepted and ignored (memory is bounded internally)
  -info                   print each file as it is added (hides the progress
                          bar unless -progress)
  -info-file FILE         print them to FILE instead (the progress bar stays)
  -percentage             print the percentage done on standard output, one
                          a line, instead of the bar (for dialog --gauge)
  -progress               show the progress bar even with -info
  -no-progress            do not show the progress bar (it is only ever
                          drawn when standard error is a terminal)
  -quiet                  print nothing but errors
  -reproducible, -no-recovery, -exit-on-error
                          accepted for compatibility; always in effect (a
                          source that cannot be read ends the run)
  -not-reproducible       accepted and ignored
  -single-reader, -small-readers N, -block-readers N, -overcommit N,
  -mem-percent N, -mem-default, -no-pager, -cols N
                          accepted and ignored (mksquashfs 4.6 and later;
                          reading and memory are tuned internally)
  -version                print the version
  -help, -h, --help, -help-all, -ha
                          print this help

Appending: when DEST is an image file and -noappend is not given, the
sources are added to the image's root (a SOURCE entry whose name the root
has already is renamed NAME_1, NAME_2, ...; see -root-becomes), and files
that repeat the image's take no room again. The image keeps its
compressor, block size and layout: -comp, -b, -X..., -noI, -noD, -noF,
-noX, -no-fragments, -always-use-fragments, -no-duplicates and -exports
are ignored. The new image is written beside DEST and renamed over it once
complete, so an append that fails or is interrupted leaves DEST as it was
(and needs room for a second copy while it runs), and no recovery file is
needed. Block devices are not appended to. An image that a loop device
serves (mounted) is neither appended to nor overwritten: unmount it first.

Not supported: actions, -throttle, -limit, -stream, -fix, recovery files
(-recover).
`
