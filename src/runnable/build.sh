#!/usr/bin/env bash
# Builds ready-amd64 and ready-arm64 from amd64.s and arm64.s with binutils alone
# (Debian: binutils, binutils-aarch64-linux-gnu), into OUTDIR (default: this directory).
#   src/runnable/build.sh [OUTDIR]
# The output depends on the sources and the binutils version only: no build id, no
# symbols, no timestamps, fixed load address and page size. .ci/runnable rebuilds and
# compares, so after editing a source run this and commit the binaries with it.
#
# Link flags: a text segment (R E, holding the ELF headers too) and a .bss segment (RW,
# no file bytes) rather than -n's single RWX segment; -z noseparate-code keeps the text
# from being padded out to a page of its own, so each file stays under 2 KB. The arm64
# page size is 64 KiB so the file loads on kernels with 4, 16 or 64 KiB pages.
set -euo pipefail
export LC_ALL=C
src=$(cd "$(dirname "$0")" && pwd)
out=${1:-$src}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# On an x86_64 Debian `as` and `ld` are these; the triplet names also work elsewhere.
x86_as=x86_64-linux-gnu-as
x86_ld=x86_64-linux-gnu-ld
command -v "$x86_as" >/dev/null || x86_as=as
command -v "$x86_ld" >/dev/null || x86_ld=ld

ldflags=(-static -s --build-id=none -z noseparate-code -z noexecstack
  -Ttext-segment=0x400000 --fatal-warnings)

"$x86_as" --64 --fatal-warnings -o "$tmp/amd64.o" "$src/amd64.s"
"$x86_ld" -m elf_x86_64 -z max-page-size=0x1000 "${ldflags[@]}" \
  -o "$tmp/ready-amd64" "$tmp/amd64.o"

aarch64-linux-gnu-as --fatal-warnings -o "$tmp/arm64.o" "$src/arm64.s"
aarch64-linux-gnu-ld -m aarch64linux -z max-page-size=0x10000 "${ldflags[@]}" \
  -o "$tmp/ready-arm64" "$tmp/arm64.o"

for f in ready-amd64 ready-arm64; do
  chmod 0755 "$tmp/$f"
  mv "$tmp/$f" "$out/$f"
done
