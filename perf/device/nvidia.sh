#!/usr/bin/env bash
# kiln's op tests, the quick perf suite and a short training run on an NVIDIA machine that
# has no package registry and no network, from binaries built on another machine.
#
#   perf/device/nvidia.sh pack [BUILD_DIR] [CARRY_DIR]            on the build machine
#   perf/device/nvidia.sh run [--dry-run] [CARRY_DIR] [OUT_DIR]   on the NVIDIA machine
#
# BUILD_DIR defaults to build/, CARRY_DIR to build-device/ (git-ignored), OUT_DIR to $OUT,
# else build-device-out/<UTC time>/. `run --dry-run` takes the same path on the build machine
# with PoCL standing in for the NVIDIA driver. perf/README.md ("NVIDIA machines") has the
# whole procedure and what lands in OUT_DIR.
#
# Environment (run):
#   KILN_DEVICE          device to test (default: nvidia; dry run: Portable Computing Language)
#   KILN_NV_OPENCL_LIB   OpenCL driver library to name in the ICD file instead of searching
#   KILN_NV_STEPS        comma list of steps to run (default: all; names as in summary.txt)
#   KILN_NV_TIMEOUTS     per-step limits in seconds over the defaults, e.g. bench-ops=150,train=90
#   KILN_NV_BUDGET       seconds the whole run may take (default 465: inside 8 minutes)
#   KILN_NV_DRY_RUN=1    same as --dry-run
# Exit status (run): 0 every step passed, 1 a step failed or timed out, 2 usage or carry
# folder problem, 3 no OpenCL driver library (nvidia-smi's output is still recorded).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PROG=nvidia.sh
CARRY_LIMIT_MIB=64   # what may travel to the device machine, carry folder and tree together
CARRY_WARN_MIB=48
KILL_GRACE=5         # after SIGTERM (kiln train checkpoints on it), before SIGKILL

# glibc must come from the target: its libc, libm, ld.so... are one unit with the kernel
# interface and the dynamic loader. libgcc_s is carried (it is not on this list): it comes
# from the same GCC as the carried libstdc++ and libgfortran, whose GCC_x symbol versions it
# must provide; `run` falls back to the target's copy when the carried one needs a newer glibc.
GLIBC_RE='^(ld-linux[^/]*|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libanl|libnsl|libBrokenLocale|libthread_db|libc_malloc_debug|libmemusage|libpcprofile|libnss_[A-Za-z0-9_]+)\.so'

die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 2; }
say() { printf '%s: %s\n' "$PROG" "$*"; }

usage() {
    cat <<EOF
usage: $PROG pack [BUILD_DIR] [CARRY_DIR]
       $PROG run [--dry-run] [CARRY_DIR] [OUT_DIR]
pack: copy kiln, test-backend-ops, the shared libraries they need (ldd, minus glibc), the
      OpenCL ICD loader and Fashion-MNIST t10k into CARRY_DIR (default build-device/)
run:  on the NVIDIA machine: point an ICD file at libnvidia-opencl.so.1 and run nvidia-smi,
      kiln devices, test-backend-ops (opencl, clblast), kiln bench --quick and a short
      kiln train, each with a timeout, logs and summary.txt in OUT_DIR (default \$OUT)
      --dry-run: the same against PoCL, with short steps, on the build machine
EOF
}

# "GLIBC_2.34" -> "2.34"; the newest glibc symbol version FILE asks for ("" if none).
glibc_need() {
    readelf -W -V "$1" 2>/dev/null | sed -n '/Version needs section/,$p' |
        grep -o 'Name: GLIBC_[0-9][0-9.]*' | sed 's/Name: GLIBC_//' | sort -uV | tail -n 1 || true
}

# True when version $1 is older than $2.
version_lt() {
    [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]
}

# "soname<TAB>path" for every library ldd resolves for FILE; "soname<TAB>not found" otherwise.
ldd_libs() {
    ldd "$1" | awk '$2 == "=>" { if ($3 == "not") print $1 "\tnot found"; else print $1 "\t" $3 }'
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# Bytes of the files that travel with the repository: tracked and untracked, not ignored.
tree_bytes() {
    local total=0 f s
    while IFS= read -r -d '' f; do
        [ -f "$ROOT/$f" ] || continue
        s=$(stat -c %s "$ROOT/$f")
        total=$((total + s))
    done < <(git -C "$ROOT" ls-files -z --cached --others --exclude-standard)
    printf '%s\n' "$total"
}

# Carried libraries are stored gzipped (OpenBLAS alone is 35 MiB, 11 MiB compressed); this
# unpacks a carry folder's bin/ and lib/ into DEST with the execute bits the transfer may lose.
expand_carry() {
    local carry=$1 dest=$2 f name
    mkdir -p "$dest/bin" "$dest/lib"
    for f in "$carry"/bin/*; do
        cp "$f" "$dest/bin/"
        chmod 755 "$dest/bin/${f##*/}"
    done
    for f in "$carry"/lib/*; do
        name=${f##*/}
        case $name in
            *.gz) gzip -dc "$f" >"$dest/lib/${name%.gz}" ;;
            *) cp "$f" "$dest/lib/$name" ;;
        esac
    done
}

# ---- pack (build machine) ----

pack() {
    local build=${1:-$ROOT/build} carry=${2:-$ROOT/build-device}
    local datasrc=${KILN_NV_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
    local bins=("$build/kiln" "$build/tests/test-backend-ops") b f
    for b in "${bins[@]}"; do
        [ -x "$b" ] || die "$b: not found or not executable (build kiln first: cmake --build $build)"
    done
    for f in t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
        [ -f "$datasrc/$f" ] || die "$datasrc/$f: not found (Debian package dataset-fashion-mnist)"
    done
    command -v readelf >/dev/null || die "readelf not found (binutils): needed for the glibc check"
    # Never wipe a folder this script did not make.
    if [ -e "$carry" ] && [ ! -f "$carry/MANIFEST" ] && [ -n "$(ls -A "$carry" 2>/dev/null)" ]; then
        die "$carry exists and is not a carry folder (no MANIFEST); remove it or pick another"
    fi
    rm -rf "$carry"
    mkdir -p "$carry/bin" "$carry/lib" "$carry/data"
    carry=$(cd "$carry" && pwd)

    local -A lib_src=()
    local soname path missing=""
    for b in "${bins[@]}"; do
        cp "$b" "$carry/bin/"
        while IFS=$'\t' read -r soname path; do
            if [ "$path" = "not found" ]; then
                missing="$missing $soname (${b##*/})"
                continue
            fi
            [[ $soname =~ $GLIBC_RE ]] && continue
            lib_src[$soname]=$(readlink -f "$path")
        done < <(ldd_libs "$b")
    done
    [ -z "$missing" ] || die "ldd cannot resolve:$missing"
    # kiln links the loader, but say so if that ever changes: the target may have none.
    [ -n "${lib_src[libOpenCL.so.1]:-}" ] || die "libOpenCL.so.1 (the OpenCL ICD loader) is not among the libraries of ${bins[*]}"

    local manifest="$carry/MANIFEST" commit dirty="" origin need max_need="" bin_need="" need_by="" bytes=0
    commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        dirty=" +local-changes"
    fi
    {
        printf '# kiln carry folder for perf/device/nvidia.sh run\n'
        printf 'commit\t%s%s\n' "$commit" "$dirty"
        printf 'packed\t%s on %s (glibc %s) from %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
            "$(uname -n)" "$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')" "$build"
        printf '# kind\tname\tglibc_needed\tbytes\tsource\n'
    } >"$manifest"
    for b in "${bins[@]}"; do
        need=$(glibc_need "$b")
        printf 'bin\t%s\t%s\t%s\t%s\n' "${b##*/}" "$need" "$(stat -c %s "$b")" "$b" >>"$manifest"
        if [ -n "$need" ] && { [ -z "$bin_need" ] || version_lt "$bin_need" "$need"; }; then bin_need=$need; fi
    done
    for soname in $(printf '%s\n' "${!lib_src[@]}" | sort); do
        path=${lib_src[$soname]}
        gzip -9 -n -c "$path" >"$carry/lib/$soname.gz"
        need=$(glibc_need "$path")
        # usrmerge: dpkg may know the file under /lib rather than /usr/lib.
        origin=$( { dpkg -S "$path" || dpkg -S "${path#/usr}"; } 2>/dev/null | head -n 1 | sed 's/: .*//' || true)
        if [ "$soname" = libOpenCL.so.1 ] && [ -n "$origin" ] && [[ $origin != ocl-icd* ]]; then
            say "warning: libOpenCL.so.1 comes from $origin, not ocl-icd: OCL_ICD_VENDORS may not apply"
        fi
        printf 'lib\t%s\t%s\t%s\t%s%s\n' "$soname" "$need" "$(stat -c %s "$path")" "$path" \
            "${origin:+ ($origin)}" >>"$manifest"
        if [ -n "$need" ] && { [ -z "$max_need" ] || version_lt "$max_need" "$need"; }; then
            max_need=$need need_by=$soname
        elif [ -n "$need" ] && [ "$need" = "$max_need" ]; then
            need_by="$need_by $soname"
        fi
    done
    if [ -z "$max_need" ] || version_lt "$max_need" "$bin_need"; then max_need=$bin_need; fi
    # A real run needs real labels: the 10,000 t10k images (4.3 MiB) train a narrow VGG16 to a
    # meaningful test accuracy in one epoch; `kiln data gen` images carry no learnable label.
    for f in t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
        cp "$datasrc/$f" "$carry/data/"
        printf 'data\t%s\t\t%s\t%s\n' "$f" "$(stat -c %s "$datasrc/$f")" "$datasrc/$f" >>"$manifest"
    done
    printf 'glibc_required\t%s\n' "$max_need" >>"$manifest"
    (cd "$carry" && find bin lib data -type f -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS)

    # The check the target repeats: every non-glibc library resolves from the carried set.
    local tmp bad=0 line
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-pack.XXXXXX")
    expand_carry "$carry" "$tmp"
    for b in "$tmp"/bin/*; do
        say "LD_LIBRARY_PATH=<carried lib> ldd ${b##*/}:"
        while IFS=$'\t' read -r soname path; do
            line="  $soname => $path"
            if [ "$path" = "not found" ]; then
                line="$line   <-- missing"; bad=1
            elif ! [[ $soname =~ $GLIBC_RE ]] && [ "${path%/*}" != "$tmp/lib" ]; then
                line="$line   <-- not from the carry folder"; bad=1
            fi
            printf '%s\n' "$line"
        done < <(LD_LIBRARY_PATH="$tmp/lib" ldd_libs "$b")
    done
    rm -rf "$tmp"
    [ "$bad" = 0 ] || die "the carried libraries do not cover the binaries (see above)"

    local cbytes tbytes nfiles
    cbytes=$(du -sb "$carry" | cut -f1)
    nfiles=$(find "$carry" -type f | wc -l)
    bytes=0
    for soname in "${!lib_src[@]}"; do bytes=$((bytes + $(stat -c %s "${lib_src[$soname]}"))); done
    say "carry folder $carry: $(mib "$cbytes") MiB in $nfiles files (libraries $(mib "$bytes") MiB unpacked, gzipped here)"
    say "libraries carried (${#lib_src[@]}): $(printf '%s\n' "${!lib_src[@]}" | sort | tr '\n' ' ')"
    say "the target's glibc must be >= $bin_need for the binaries; >= $max_need for every carried library ($need_by; on an older glibc the target's own copy of those is used)"
    if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 && tbytes=$(tree_bytes); then
        local total=$((cbytes + tbytes))
        say "working tree $(mib "$tbytes") MiB; carry + tree $(mib "$total") MiB of the $CARRY_LIMIT_MIB MiB transfer limit"
        if [ "$total" -ge $((CARRY_LIMIT_MIB * 1048576)) ]; then
            die "carry + tree exceed $CARRY_LIMIT_MIB MiB"
        elif [ "$total" -ge $((CARRY_WARN_MIB * 1048576)) ]; then
            say "warning: carry + tree above $CARRY_WARN_MIB MiB, little room left"
        fi
    fi
    say "packed $carry; on the NVIDIA machine: bash perf/device/nvidia.sh run ${carry#"$ROOT"/}"
}

# ---- run (target machine) ----

OUT_DIR="" SUMMARY="" RUN_DIR="" DEADLINE=0
FAILED=0
declare -A TIMEOUT_OVERRIDE=()

want() {
    [ -z "${KILN_NV_STEPS:-}" ] && return 0
    [[ ",$KILN_NV_STEPS," == *",$1,"* ]]
}

record() { # NAME STATUS RC TIME LIMIT KEY
    printf '%-22s %-8s rc=%-4s %5s  limit %5s  %s\n' "$@" | tee -a "$SUMMARY"
}

# The line of each log that says how the step went (else its last line).
key_line() {
    local log=$OUT_DIR/$1.log key=""
    [ -f "$log" ] || return 0
    key=$(key_pattern "$1" "$log")
    [ -n "$key" ] || key=$(tail -n 1 "$log" | cut -c1-160)
    printf '%s\n' "$key"
}

key_pattern() {
    local log=$2
    case $1 in
        devices) grep -m 1 '^selected:' "$log" || head -n 1 "$log" ;;
        backend-ops-*)
            if ! grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1; then
                # -v names every case as it passes: how far a timed-out run got.
                echo "unfinished: $(grep -c ': ok nmse\|gradient ok' "$log") ok, $(grep -c 'MISMATCH\|GRADIENT' "$log") failed so far"
            fi ;;
        bench-*) grep -E '^wrote .*json' "$log" || true ;;
        train) grep -E '^(test accuracy|trained)' "$log" | tr '\n' ' ' || true ;;
        nvidia-smi) grep -m 1 -E 'Driver Version' "$log" | tr -s ' |' ' ' || true ;;
        *) ;;
    esac
}

# run_step NAME LIMIT CMD...: CMD's stdout+stderr in OUT_DIR/NAME.log, a line in summary.txt.
# A failure is recorded and the run goes on.
run_step() {
    local name=$1 limit=$2
    shift 2
    want "$name" || { record "$name" "skipped" "-" "-" "-" "not in KILN_NV_STEPS"; return 0; }
    limit=${TIMEOUT_OVERRIDE[$name]:-$limit}
    local left=$((DEADLINE - SECONDS - KILL_GRACE))
    if [ "$left" -lt 5 ]; then
        record "$name" "not-run" "-" "-" "-" "the ${BUDGET}s budget is spent"
        FAILED=$((FAILED + 1))
        return 0
    fi
    [ "$limit" -le "$left" ] || limit=$left
    local t0=$SECONDS rc=0 status=ok
    # The outer 2>/dev/null only silences bash's "Killed" notice; the step's output is in its log.
    { timeout -k "$KILL_GRACE" "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1 </dev/null; } 2>/dev/null || rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        status=timeout
    elif [ "$rc" != 0 ]; then
        status=FAILED
    fi
    [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
    record "$name" "$status" "$rc" "$((SECONDS - t0))s" "${limit}s" "$(key_line "$name")"
}

# Steps run here (no child process to time out): NAME FUNCTION.
run_local_step() {
    local name=$1 rc=0 t0=$SECONDS
    want "$name" || { record "$name" "skipped" "-" "-" "-" "not in KILN_NV_STEPS"; return 0; }
    "$2" >"$OUT_DIR/$name.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
    local status=ok
    [ "$rc" = 0 ] || status=FAILED
    record "$name" "$status" "$rc" "$((SECONDS - t0))s" "-" "$(key_line "$name")"
}

CARRY=""
step_verify() {
    if ! command -v sha256sum >/dev/null; then
        echo "sha256sum not found: carry folder not verified"
        return 0
    fi
    (cd "$CARRY" && sha256sum -c --quiet SHA256SUMS) && echo "all $(wc -l <"$CARRY/SHA256SUMS") carried files intact"
}

LDD=()
ICD_LIB=""
step_ldd() {
    local b soname path bad=0
    for b in "$RUN_DIR"/bin/* "$ICD_LIB"; do
        echo "== $b"
        "${LDD[@]}" "$b" 2>&1 || bad=1
        while IFS=$'\t' read -r soname path; do
            if [ "$path" = "not found" ]; then
                echo "MISSING: $soname"; bad=1
            elif [ "$b" != "$ICD_LIB" ] && ! [[ $soname =~ $GLIBC_RE ]] && [ "${path%/*}" != "$RUN_DIR/lib" ]; then
                echo "from the target, not the carry folder: $soname => $path"
            fi
        done < <("${LDD[@]}" "$b" 2>/dev/null | awk '$2 == "=>" { if ($3 == "not") print $1 "\tnot found"; else print $1 "\t" $3 }')
        if "${LDD[@]}" "$b" 2>&1 | grep -q 'version .* not found'; then bad=1; fi
    done
    [ "$bad" = 0 ] && echo "every library resolves (carried ones from $RUN_DIR/lib)"
    return "$bad"
}

# Directories that may hold a driver's OpenCL library, most specific first.
search_dirs() {
    local smi
    [ -z "${ORIG_LD_LIBRARY_PATH:-}" ] || printf '%s\n' "$ORIG_LD_LIBRARY_PATH" | tr ':' '\n'
    # nvidia-smi loads libnvidia-ml.so.1 from the driver's library folder; OpenCL sits next to it.
    "${LDCONFIG[@]}" -p 2>/dev/null | awk '/libnvidia-ml\.so\.1 .*x86-64/ { sub(/\/[^\/]*$/, "", $NF); print $NF }' || true
    if smi=$(command -v nvidia-smi 2>/dev/null); then
        smi=$(dirname "$(readlink -f "$smi")")
        printf '%s\n' "$smi/../lib64" "$smi/../lib"
    fi
    printf '%s\n' /usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/nvidia/current /usr/lib64 \
        /usr/lib64/nvidia /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/wsl/lib \
        /usr/lib/nvidia /run/nvidia/driver/usr/lib/x86_64-linux-gnu /run/nvidia/driver/usr/lib64 \
        /lib/x86_64-linux-gnu /lib64 /usr/lib /usr/local/lib
}

is_elf64() { [ "$(od -An -tx1 -j4 -N1 "$1" 2>/dev/null | tr -d ' ')" = 02 ]; }

# find_opencl_lib NAME...: absolute path of the first 64-bit library of one of these names.
find_opencl_lib() {
    local name d f
    for name in "$@"; do
        case $name in /*) if [ -f "$name" ] && is_elf64 "$name"; then echo "$name"; return 0; fi; continue ;; esac
        while read -r f; do
            [ -f "$f" ] && is_elf64 "$f" && { echo "$f"; return 0; }
        done < <("${LDCONFIG[@]}" -p 2>/dev/null | awk -v n="$name" '$1 == n && /x86-64/ { print $NF }' || true)
        while read -r d; do
            if [ -z "$d" ] || [ ! -d "$d" ]; then continue; fi
            for f in "$d/$name" "$d/${name%%.so*}.so".[0-9]*; do
                [ -f "$f" ] && is_elf64 "$f" && { echo "$f"; return 0; }
            done
        done < <(search_dirs)
    done
    return 1
}

# Library names the system's ICD files give for a vendor (a path or a bare name).
icd_names() {
    local f
    for f in /etc/OpenCL/vendors/*"$1"*.icd; do
        [ -f "$f" ] && tr -d '\r' <"$f" | awk 'NF { print $1 }'
    done
    return 0
}

run() {
    local dry=${KILN_NV_DRY_RUN:-0}
    [ "$dry" = 1 ] || dry=0
    local args=()
    while [ $# -gt 0 ]; do
        case $1 in
            --dry-run) dry=1 ;;
            -h | --help) usage; exit 0 ;;
            -*) usage >&2; exit 2 ;;
            *) args+=("$1") ;;
        esac
        shift
    done
    [ "${#args[@]}" -le 2 ] || { usage >&2; exit 2; }
    CARRY=${args[0]:-$ROOT/build-device}
    local mode=nvidia
    [ "$dry" = 0 ] || mode="dry-run"
    OUT_DIR=${args[1]:-${OUT:-$ROOT/build-device-out/$(date -u +%Y%m%dT%H%M%SZ)-$mode}}
    [ -f "$CARRY/MANIFEST" ] || die "$CARRY: not a carry folder (no MANIFEST); make one with: $PROG pack"
    command -v timeout >/dev/null || die "timeout (coreutils) not found: the steps cannot be bounded"
    command -v gzip >/dev/null || die "gzip not found: the carried libraries cannot be unpacked"
    CARRY=$(cd "$CARRY" && pwd)
    mkdir -p "$OUT_DIR"
    OUT_DIR=$(cd "$OUT_DIR" && pwd)
    SUMMARY=$OUT_DIR/summary.txt
    BUDGET=${KILN_NV_BUDGET:-465}
    DEADLINE=$((SECONDS + BUDGET))
    local kv
    local spec=${KILN_NV_TIMEOUTS:-}
    for kv in ${spec//,/ }; do
        [[ $kv =~ ^[a-z-]+=[0-9]+$ ]] || die "KILN_NV_TIMEOUTS: '$kv' is not STEP=SECONDS"
        TIMEOUT_OVERRIDE[${kv%%=*}]=${kv#*=}
    done
    if command -v ldconfig >/dev/null; then LDCONFIG=(ldconfig)
    elif [ -x /sbin/ldconfig ]; then LDCONFIG=(/sbin/ldconfig)
    elif [ -x /usr/sbin/ldconfig ]; then LDCONFIG=(/usr/sbin/ldconfig)
    else LDCONFIG=(false); fi
    if command -v ldd >/dev/null; then LDD=(ldd)
    else LDD=(/lib64/ld-linux-x86-64.so.2 --list); fi

    RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kiln-nvidia.XXXXXX")
    trap 'rm -rf "$RUN_DIR"' EXIT
    : >"$SUMMARY"
    cp "$CARRY/MANIFEST" "$OUT_DIR/carry-manifest.txt"

    local glibc need_all
    glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}' || true)
    [ -n "$glibc" ] || glibc=$(ldd --version 2>/dev/null | awk 'NR == 1 { print $NF }' || true)
    need_all=$(awk -F'\t' '$1 == "glibc_required" { print $2 }' "$CARRY/MANIFEST")
    {
        echo "kiln on $mode: perf/device/nvidia.sh run, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n) ($(uname -m), $(nproc 2>/dev/null || echo ?) cores)"
        echo "carry: $CARRY, $(awk -F'\t' '$1 == "commit" { print "commit " $2 }' "$CARRY/MANIFEST"), glibc here ${glibc:-unknown}, carried set needs >= $need_all"
        echo "budget ${BUDGET}s; logs: $OUT_DIR/STEP.log"
    } | tee -a "$SUMMARY"

    # Binaries need the target's glibc >= theirs; a carried library that needs more than the
    # target has is dropped in favour of the target's own copy, if it has one.
    expand_carry "$CARRY" "$RUN_DIR"
    if [ -n "$glibc" ]; then
        local kind name need
        while IFS=$'\t' read -r kind name need _; do
            if [ -z "$need" ] || ! version_lt "$glibc" "$need"; then continue; fi
            if [ "$kind" = bin ]; then
                echo "warning: $name needs glibc $need, this machine has $glibc: it cannot start here" | tee -a "$SUMMARY"
            elif "${LDCONFIG[@]}" -p 2>/dev/null | awk -v n="$name" '$1 == n { f = 1 } END { exit !f }'; then
                rm -f "$RUN_DIR/lib/$name"
                echo "note: carried $name needs glibc $need (here $glibc): using this machine's copy" | tee -a "$SUMMARY"
            else
                echo "warning: carried $name needs glibc $need, this machine has $glibc and no copy of its own" | tee -a "$SUMMARY"
            fi
        done < <(grep -E '^(bin|lib)'$'\t' "$CARRY/MANIFEST")
    fi

    run_local_step verify step_verify
    if command -v nvidia-smi >/dev/null; then
        run_step nvidia-smi 10 nvidia-smi
        run_step nvidia-smi-q 10 nvidia-smi -q
    else
        record nvidia-smi absent - - - "nvidia-smi is not on PATH"
    fi

    local lib_names icd_file
    ORIG_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
    if [ "$dry" = 1 ]; then
        mapfile -t lib_names < <(icd_names pocl; echo libpocl.so.2)
        icd_file=pocl.icd
        export KILN_DEVICE=${KILN_DEVICE:-Portable Computing Language}
    else
        mapfile -t lib_names < <(echo libnvidia-opencl.so.1; icd_names nvidia)
        icd_file=nvidia.icd
        export KILN_DEVICE=${KILN_DEVICE:-nvidia}
    fi
    [ -z "${KILN_NV_OPENCL_LIB:-}" ] || lib_names=("$KILN_NV_OPENCL_LIB")
    if ! ICD_LIB=$(find_opencl_lib "${lib_names[@]}"); then
        local where msg
        where=$(search_dirs | awk 'NF && !seen[$0]++' | paste -sd ' ' -)
        msg="${lib_names[*]} not found: looked in ${LDCONFIG[*]} -p, /etc/OpenCL/vendors/*.icd and $where"
        [ "$dry" = 1 ] || msg="NVIDIA OpenCL driver library $msg (the driver's OpenCL part is not installed or not mounted; KILN_NV_OPENCL_LIB=PATH names it)"
        printf '%s: %s\n' "$PROG" "$msg" >&2
        record opencl-library ABSENT - - - "$msg" >/dev/null
        echo "result: no OpenCL driver library; nvidia-smi output (if any) in $OUT_DIR" | tee -a "$SUMMARY"
        exit 3
    fi
    # The ICD loader reads only this folder, so the test sees the one platform named here.
    mkdir -p "$OUT_DIR/icd"
    rm -f "$OUT_DIR"/icd/*.icd
    printf '%s\n' "$ICD_LIB" >"$OUT_DIR/icd/$icd_file"
    export OCL_ICD_VENDORS=$OUT_DIR/icd
    # The driver's own libraries (libnvidia-ptxjitcompiler...) sit next to it, maybe outside
    # the linker cache; they come after the carried ones.
    local icd_dir=${ICD_LIB%/*}
    if [[ ":$ORIG_LD_LIBRARY_PATH:" == *":$icd_dir:"* ]]; then icd_dir=""; fi
    LD_LIBRARY_PATH=$RUN_DIR/lib${icd_dir:+:$icd_dir}${ORIG_LD_LIBRARY_PATH:+:$ORIG_LD_LIBRARY_PATH}
    export LD_LIBRARY_PATH
    export KILN_CACHE_DIR=$OUT_DIR/kiln-cache
    mkdir -p "$KILN_CACHE_DIR"
    record opencl-library found - - - "$OUT_DIR/icd/$icd_file: $ICD_LIB"
    env | grep -E '^(KILN_|OCL_|LD_LIBRARY_PATH=|CUDA_|NVIDIA_)' | sort >"$OUT_DIR/env.txt" || true

    # Real runs: the whole op harness and the quick suite. Dry runs: the same path, short.
    local bin=$RUN_DIR/bin data=$CARRY/data
    local ops_args=(-v) bench_ops=(--only "gemm,conv,pool,convert") bench_train=(--only "train,first-step")
    local train_args=(--epochs 1)
    if [ "$dry" = 1 ]; then
        ops_args=(-v -s)
        bench_ops=(--only gemm --min-ms 1)
        bench_train=(--only "first-step" --min-ms 1)
        train_args=(--epochs 1 --max-steps 10)
    fi
    # Limits add up to 455 s, inside the 465 s budget: the run ends within 8 minutes.
    run_local_step ldd step_ldd
    run_step devices 30 "$bin/kiln" devices
    run_step backend-ops-opencl 85 env KILN_KERNELS=gpu "$bin/test-backend-ops" -b opencl "${ops_args[@]}"
    # The Winograd forms, which auto takes where it measures them faster, forced on every 3x3
    # stride-1 case.
    for wf in 1 4; do
        run_step "backend-ops-winograd$wf" 15 env KILN_KERNELS=gpu KILN_TUNE_CONV="WINOGRAD=$wf" \
            "$bin/test-backend-ops" -b opencl -o conv -c "k=3x3 s=1x1" "${ops_args[@]}"
    done
    # The tiled form's edge tiles forced on every case the tiled form runs.
    run_step backend-ops-edge 15 env KILN_KERNELS=gpu KILN_TUNE_CONV=EDGE=1 \
        "$bin/test-backend-ops" -b opencl -o conv "${ops_args[@]}"
    run_step backend-ops-clblast 75 "$bin/test-backend-ops" -b clblast "${ops_args[@]}"
    # `kiln bench --quick` in two processes, each with its own JSON, so that a timeout in one
    # keeps the other's results; the data-pipeline part (host JPEG decoding) is left out.
    run_step bench-ops 85 "$bin/kiln" bench --quick --no-peers "${bench_ops[@]}" \
        --json "$OUT_DIR/bench-quick-ops.json" --html "$OUT_DIR/bench-quick-ops.html"
    run_step bench-train 70 "$bin/kiln" bench --quick --no-peers "${bench_train[@]}" \
        --json "$OUT_DIR/bench-quick-train.json" --html "$OUT_DIR/bench-quick-train.html"
    # Checkpoints (150 MB with momentum) stay in the temporary folder; logs and the report come back.
    run_step train 60 env KILN_LOG=info "$bin/kiln" train --model vgg16-narrow \
        --data "$data/t10k-images-idx3-ubyte.gz" --val-split 0.1 --batch 64 \
        --lr 0.02 --nesterov --warmup 50 --schedule cosine --augment padcrop:4,flip:h \
        --seed 1 --out "$RUN_DIR/train" "${train_args[@]}"
    if [ -d "$RUN_DIR/train" ]; then
        mkdir -p "$OUT_DIR/train"
        find "$RUN_DIR/train" -maxdepth 1 -type f -size -1024k -exec cp {} "$OUT_DIR/train/" \;
        (cd "$RUN_DIR/train" && ls -l) >"$OUT_DIR/train/files.txt"
    fi

    local cache_kib
    cache_kib=$(du -sk "$KILN_CACHE_DIR" | cut -f1)
    echo "kiln cache: $KILN_CACHE_DIR, $cache_kib KiB" | tee -a "$SUMMARY"
    echo "result: $FAILED step(s) failed, ${SECONDS}s in all" | tee -a "$SUMMARY"
    [ "$FAILED" = 0 ]
}

LDCONFIG=(false)
ORIG_LD_LIBRARY_PATH=""
BUDGET=465
case ${1:-} in
    pack) shift; [ $# -le 2 ] || { usage >&2; exit 2; }; pack "$@" ;;
    run) shift; run "$@" ;;
    -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
esac
