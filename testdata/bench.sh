#!/usr/bin/env bash
# Builds the synthetic Portage tree and times image writers on it. Writers
# are listed in run_writer calls at the bottom; each gets the same tree.
set -euo pipefail

scale=${BENCH_SCALE:-1}
seed=${BENCH_SEED:-1}
work=${BENCH_DIR:-$(mktemp -d /var/tmp/squashportage-bench.XXXXXX)}
keep=${BENCH_KEEP:-}
if [[ -z $keep ]]; then
	trap 'rm -rf "$work"' EXIT
fi

tree=$work/tree
if [[ ! -d $tree ]]; then
	mkdir -p "$tree"
	echo "== generating Portage tree (scale $scale, seed $seed) in $tree"
	go run ./testdata/gentree -o "$tree" -scale "$scale" -seed "$seed"
fi

# run_writer NAME COMMAND... times one writer; the image path is $work/NAME.sqfs.
run_writer() {
	local name=$1
	shift
	echo "== $name"
	rm -f "$work/$name.sqfs"
	/usr/bin/time -v "$@" 2>"$work/$name.time" >/dev/null
	grep -E 'Elapsed|Maximum resident|User time|System time' "$work/$name.time"
	echo "   image: $(stat -c %s "$work/$name.sqfs") bytes"
}

run_writer mksquashfs-gzip mksquashfs "$tree" "$work/mksquashfs-gzip.sqfs" -noappend -no-progress -quiet
run_writer mksquashfs-zstd mksquashfs "$tree" "$work/mksquashfs-zstd.sqfs" -noappend -no-progress -quiet -comp zstd
