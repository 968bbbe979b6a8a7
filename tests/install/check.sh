#!/usr/bin/env bash
# Installs kiln from BUILD_DIR into a temporary prefix, then builds and runs a consumer with
# pkg-config and with find_package.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$prefix" "$work"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name kiln.pc)")/..
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export KILN_BACKEND=cpu
# shellcheck disable=SC2046
cc -std=c11 -o "$work/pc" "$here/consumer.c" $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs kiln)
"$work/pc"
cmake -S "$here" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm" >/dev/null
"$work/cm/consumer"
test -x "$prefix/bin/kiln"
"$prefix/bin/kiln" version
echo "install check passed"
