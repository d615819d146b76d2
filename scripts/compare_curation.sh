#!/usr/bin/env bash
# Curation outputs of two medforge binaries on the same configs: sha256 of filtered.parquet and curated.parquet for
# examples/curate_demo.toml and examples/curate.toml (which reads ../shared/data). A refactor must leave them
# byte-identical unless it means to change them.
#
#   git worktree add /tmp/base <rev> && (cd /tmp/base && cargo build --bin medforge)
#   scripts/compare_curation.sh /tmp/base/target/debug/medforge target/debug/medforge
set -euo pipefail
cd "$(dirname "$0")/.."
A="$(realpath "$1")" B="$(realpath "$2")"
work="$(mktemp -d)"
trap 'rm -rf "$work"; rm -f examples/.compare_curation.*.toml' EXIT
status=0
for cfg in examples/curate_demo.toml examples/curate.toml; do
    for side in A B; do
        bin="$A"; [ "$side" = B ] && bin="$B"
        out="$work/$side/$(basename "$cfg" .toml)"
        # The copy sits beside the original so its relative input paths still resolve.
        tmp="examples/.compare_curation.$side.toml"
        sed "s#^output = .*#output = \"$out\"#" "$cfg" > "$tmp"
        "$bin" curate --config "$tmp" > "$work/$side.dir" 2> "$work/$side.log" || { cat "$work/$side.log" >&2; exit 1; }
        dir="$(tail -1 "$work/$side.dir")"
        for f in filtered.parquet curated.parquet; do
            echo "$(sha256sum "$dir/$f" | cut -d' ' -f1) $f" > "$work/$side.$f.sha"
        done
    done
    for f in filtered.parquet curated.parquet; do
        if cmp -s "$work/A.$f.sha" "$work/B.$f.sha"; then
            echo "$cfg $f: identical ($(cut -c1-16 "$work/A.$f.sha"))"
        else
            echo "$cfg $f: DIFFERENT (A $(cut -c1-16 "$work/A.$f.sha"), B $(cut -c1-16 "$work/B.$f.sha"))"
            status=1
        fi
    done
done
exit "$status"
