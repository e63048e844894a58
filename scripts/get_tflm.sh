#!/usr/bin/env bash
# Get TensorFlow Lite Micro (the pinned upstream commit) and build its static libraries for the
# Cortex-M targets of tflm_app/. TFLM's code is never part of this repository: it lives in
# TFLM_ROOT, outside it.
#
#   scripts/get_tflm.sh [--build <board>|all] [--kernels cmsis-nn|reference|all] [--debug] [--no-build]
#
# --build     the CPU to build for: a board's, i.e. the TFLM_TARGET_ARCH of tflm_app/targets/<board>/
#             target.mk (m55, m4, stm32l4, ...), or all (default): every board's, each CPU once
# --kernels   cmsis-nn: TFLM's CMSIS-NN kernels (OPTIMIZED_KERNEL_DIR=cmsis_nn: Helium on M55,
#             the DSP extension on M4); reference: TFLM's portable C++ kernels; all (default): both
# --debug     the debug libraries instead (TFLM's BUILD_TYPE=default: its error log and DCHECKs,
#             -Os core / -O2 kernels) for `tinyloc deploy --debug`. Without it: the release
#             libraries (BUILD_TYPE=release: error strings and DCHECKs compiled out, all -Os)
#
# Environment:
#   TFLM_ROOT         where the TFLM tree is (or goes). Default: ~/.cache/tinyloc/tflm.
#                     An existing tree is used as it is (its commit is only reported).
#   TINYLOC_GIT_BASE  where <owner>/<name> git repositories are found. Default:
#                     https://github.com. Offline, point it at a folder holding clones or bare
#                     copies laid out as <owner>/<name> (tensorflow/tflite-micro,
#                     google/flatbuffers, google/gemmlowp, google/ruy, mborgerding/kissfft,
#                     google/pigweed, ARM-software/CMSIS_6, ARM-software/Cortex_DFP,
#                     ARM-software/CMSIS-NN).
#   JOBS              parallel compile jobs (default: number of cores).
#   TFLM_PYTHON       the python3 TFLM's make runs (its example rules import numpy and PIL).
#                     Default: this project's .venv when present, else python3.
#
# TFLM's own make downloads its third-party code as zip files from GitHub. This script puts
# the same commits in the same places (tensorflow/lite/micro/tools/make/downloads/) from git,
# applies TFLM's patches, and so also works from local copies when GitHub cannot be reached.
# Each library takes 10-45 minutes on 2 cores, depending on what else runs.
set -euo pipefail

# The TFLM commit the firmware was built and measured with, and the third-party commits that
# commit's download scripts pin (third_party_downloads.inc, flatbuffers_download.sh,
# kissfft_download.sh, pigweed_download.sh, ext_libs/cmsis_download.sh).
TFLM_COMMIT=90b983c2b3f1480642e040bbd2ddb37b998f3424
DEPS=(
  # folder under downloads/     owner/name                 commit or tag                               TFLM patch (relative to TFLM_ROOT)
  "flatbuffers                  google/flatbuffers         v25.9.23                                    tensorflow/lite/micro/tools/make/flatbuffers.patch"
  "gemmlowp                     google/gemmlowp            719139ce755a0f31cbf1c37f7f98adcc7fc9f425    -"
  "ruy                          google/ruy                 d37128311b445e758136b8602d1bbd2a755e115d    -"
  "kissfft                      mborgerding/kissfft        v130                                        third_party/kissfft/kissfft.patch"
  "pigweed                      google/pigweed             47268dff45019863e20438ca3746c6c62df6ef09    tensorflow/lite/micro/tools/make/pigweed.patch"
  "cmsis                        ARM-software/CMSIS_6       5782d6f8057906d360f4b95ec08a2354afe5c9b9    -"
  "cmsis/Cortex_DFP             ARM-software/Cortex_DFP    c2c70a97a20fb355815e2ead3d4a40e35a4a3cdf    -"
  "cmsis_nn                     ARM-software/CMSIS-NN      4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae    -"
)

BUILD=all
KERNELS=all
BUILD_TYPE=release
while (($#)); do
  case "$1" in
    --build) BUILD=${2:?--build needs a board of tflm_app/targets or all}; shift 2 ;;
    --kernels) KERNELS=${2:?--kernels needs cmsis-nn, reference or all}; shift 2 ;;
    --debug) BUILD_TYPE=default; shift ;;
    --no-build) BUILD=none; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "get_tflm: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

TFLM_ROOT=${TFLM_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/tinyloc/tflm}
GIT_BASE=${TINYLOC_GIT_BASE:-https://github.com}
JOBS=${JOBS:-$(nproc)}
DOWNLOADS=$TFLM_ROOT/tensorflow/lite/micro/tools/make/downloads

# Export one commit of <owner>/<name> into DEST (no .git), without cloning the history.
export_commit() {
  local repo=$1 ref=$2 dest=$3 tmp
  tmp=$(mktemp -d)
  git -C "$tmp" init -q
  if ! git -C "$tmp" fetch -q --depth 1 "$GIT_BASE/$repo" "$ref" 2>"$tmp.err"; then
    # Local bare copies may refuse a shallow fetch of an unadvertised commit; fetch everything.
    git -C "$tmp" fetch -q --tags "$GIT_BASE/$repo" '+refs/heads/*:refs/remotes/origin/*' 2>>"$tmp.err" || {
      echo "get_tflm: cannot fetch $repo from $GIT_BASE (see TINYLOC_GIT_BASE):" >&2
      cat "$tmp.err" >&2; rm -rf "$tmp" "$tmp.err"; exit 1; }
  fi
  local commit
  commit=$(git -C "$tmp" rev-parse -q --verify "FETCH_HEAD^{commit}")
  if [ "${#ref}" = 40 ] && ! git -C "$tmp" cat-file -e "$ref^{commit}" 2>/dev/null; then
    echo "get_tflm: $repo has no commit $ref" >&2; rm -rf "$tmp" "$tmp.err"; exit 1
  fi
  [ "${#ref}" = 40 ] && commit=$ref
  mkdir -p "$dest"
  git -C "$tmp" archive "$commit" | tar -x -C "$dest"
  rm -rf "$tmp" "$tmp.err"
}

# 1. TFLM itself.
if [ -d "$TFLM_ROOT/tensorflow/lite/micro" ]; then
  echo "get_tflm: using the TFLM tree in $TFLM_ROOT"
else
  echo "get_tflm: exporting tensorflow/tflite-micro@$TFLM_COMMIT into $TFLM_ROOT"
  partial=$TFLM_ROOT.partial
  rm -rf "$partial"
  export_commit tensorflow/tflite-micro "$TFLM_COMMIT" "$partial"
  echo "$TFLM_COMMIT" > "$partial/.tinyloc-tflm-commit"
  mkdir -p "$(dirname "$TFLM_ROOT")"
  mv "$partial" "$TFLM_ROOT"
fi

# 2. Third-party code where TFLM's make looks for it (it skips folders that exist).
mkdir -p "$DOWNLOADS"
for entry in "${DEPS[@]}"; do
  read -r folder repo ref patch <<<"$entry"
  dest=$DOWNLOADS/$folder
  # A folder that exists is complete (put there by an earlier run via its .partial name, by
  # TFLM's own download scripts, or by hand).
  [ -d "$dest" ] && continue
  echo "get_tflm: $repo@$ref -> downloads/$folder"
  tmp=$dest.partial
  rm -rf "$tmp"
  export_commit "$repo" "$ref" "$tmp"
  # TFLM's download scripts drop Bazel BUILD files and apply their patches; do the same.
  find "$tmp" -type f \( -name BUILD -o -name BUILD.bazel \) -delete
  if [ "$patch" != - ]; then
    patch -s -p1 -l -d "$tmp" < "$TFLM_ROOT/$patch"
  fi
  mv "$tmp" "$dest"
done

# 3. The static libraries: one per CPU x kernel set, with GCC from PATH (arm-none-eabi-).
# TFLM's make names the folder gen/cortex_m_generic_<arch>_<build type>[_cmsis_nn]_gcc/; the
# firmware Makefile and tinyloc_tf/deployment/firmware.py look for the library there.
# The kernels built: the operators of the shipped models and of tinyloc's MDCSA / Mamba
# graphs in int8, and a few close neighbours. TFLM's full set is ~300 sources (41 of them
# signal-processing kernels) and takes hours on a busy 2-core machine. A model with an operator
# outside this list fails to link, and `tinyloc deploy` names the operator: add it here and
# rebuild. Each name N keeps N.cc and N_common.cc, in tensorflow/lite/micro/kernels/ or its
# cmsis_nn/ specialisation.
KERNELS_BUILT="activations add arg_min_max batch_matmul concatenation conv depthwise_conv dequantize elementwise
  fully_connected kernel_util l2norm logistic maximum_minimum micro_tensor_utils mul pad quantize reduce reshape softmax
  slice split split_v strided_slice sub tanh unpack"

build_lib() {
  local arch=$1 kernels=$2 opt=() gendir make_args kernel_srcs
  command -v arm-none-eabi-gcc >/dev/null || {
    echo "get_tflm: arm-none-eabi-gcc not found; apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib" >&2
    exit 1; }
  if [ "$kernels" = cmsis-nn ]; then opt+=(OPTIMIZED_KERNEL_DIR=cmsis_nn); fi
  if [ "$BUILD_TYPE" = release ]; then
    # Size first: TFLM compiles its kernels -O2 by default.
    opt+=(CORE_OPTIMIZATION_LEVEL=-Os KERNEL_OPTIMIZATION_LEVEL=-Os THIRD_PARTY_KERNEL_OPTIMIZATION_LEVEL=-Os)
  fi
  make_args=(-s -C "$TFLM_ROOT" -f tensorflow/lite/micro/tools/make/Makefile -j"$JOBS"
             TARGET=cortex_m_generic TARGET_ARCH="$arch" BUILD_TYPE="$BUILD_TYPE" "${opt[@]}"
             TARGET_TOOLCHAIN_ROOT="$(dirname "$(command -v arm-none-eabi-gcc)")/")
  # TFLM's kernel list after its own specialisation (cmsis_nn/ files replace reference ones),
  # cut down to KERNELS_BUILT and handed back to its make.
  printf 'print-%%:\n\t@echo $($*)\n' > "$PYBIN/print.mk"
  kernel_srcs=$(PATH="$PYBIN:$PATH" make "${make_args[@]}" -f "$PYBIN/print.mk" print-MICROLITE_CC_KERNEL_SRCS \
    | tr ' ' '\n' | grep -E "/kernels/(cmsis_nn/)?($(echo $KERNELS_BUILT | tr ' ' '|'))(_common)?\.cc$" | tr '\n' ' ')
  [ -n "$kernel_srcs" ] || { echo "get_tflm: TFLM's make listed no kernel sources" >&2; exit 1; }
  local suffix=
  [ "$kernels" = cmsis-nn ] && suffix=_cmsis_nn
  gendir=gen/cortex_m_generic_${arch}_${BUILD_TYPE}${suffix}_gcc
  # TFLM's core (interpreter, allocator, flatbuffers: obj/core/) compiles the same for both
  # kernel sets: the one -DCMSIS_NN the CMSIS-NN build adds is read in core only by
  # MicroProfiler's CSV log, which a release build strips. So the reference release library
  # takes the core objects of a CMSIS-NN one already built (make only compiles what is missing).
  local sibling=gen/cortex_m_generic_${arch}_${BUILD_TYPE}_cmsis_nn_gcc
  if [ "$kernels" = reference ] && [ "$BUILD_TYPE" = release ] && [ -f "$TFLM_ROOT/$sibling/lib/libtensorflow-microlite.a" ] \
     && [ ! -d "$TFLM_ROOT/$gendir/obj/core" ]; then
    mkdir -p "$TFLM_ROOT/$gendir/obj"
    cp -a "$TFLM_ROOT/$sibling/obj/core" "$TFLM_ROOT/$gendir/obj/core"
  fi
  echo "get_tflm: building $gendir/lib/libtensorflow-microlite.a ($kernels kernels, $BUILD_TYPE; 10-45 minutes)"
  PATH="$PYBIN:$PATH" make "${make_args[@]}" MICROLITE_CC_KERNEL_SRCS="$kernel_srcs" microlite
  # What the library was built with, for the firmware build to check.
  printf 'kernels=%s\nbuild_type=%s\nflags=%s\nkernel_sources=%s\n' "$kernels" "$BUILD_TYPE" "${opt[*]}" \
    "$kernel_srcs" > "$TFLM_ROOT/$gendir/lib/tinyloc-build.txt"
}
# TFLM's make calls `python3` while parsing example makefiles; give it one with numpy and PIL.
here=$(cd "$(dirname "$0")/.." && pwd)
TFLM_PYTHON=${TFLM_PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || command -v python3)}
PYBIN=$(mktemp -d)
trap 'rm -rf "$PYBIN"' EXIT
printf '#!/bin/sh\nexec "%s" "$@"\n' "$TFLM_PYTHON" > "$PYBIN/python3"  # a link would lose the venv
chmod +x "$PYBIN/python3"
# The boards are the folders of tflm_app/targets with a target.mk (the file the firmware
# Makefile includes); a board's CPU is its TFLM_TARGET_ARCH there. No list of boards is kept here.
TARGETS_DIR=$here/tflm_app/targets
BOARDS=()
for mk in "$TARGETS_DIR"/*/target.mk; do
  [ -f "$mk" ] && BOARDS+=("$(basename "$(dirname "$mk")")")
done
board_arch() {  # TFLM_TARGET_ARCH := <arch> (or =, ?=) of a board's target.mk
  sed -n 's/^[[:space:]]*TFLM_TARGET_ARCH[[:space:]]*[:?]\{0,1\}=[[:space:]]*\([^#[:space:]]*\).*/\1/p' \
    "$TARGETS_DIR/$1/target.mk" | tail -n 1
}
case "$BUILD" in
  none) ARCHS=() ;;
  all) mapfile -t ARCHS < <(for board in "${BOARDS[@]}"; do board_arch "$board"; done | sort -u) ;;
  *)
    if [[ "$BUILD" == */* || ! -f "$TARGETS_DIR/$BUILD/target.mk" ]]; then
      boards=$(printf '%s, ' "${BOARDS[@]}")
      echo "get_tflm: --build takes ${boards%, } or all, not '$BUILD'" >&2; exit 2
    fi
    ARCHS=("$(board_arch "$BUILD")")
    [ -n "${ARCHS[0]}" ] || { echo "get_tflm: tflm_app/targets/$BUILD/target.mk sets no TFLM_TARGET_ARCH" >&2; exit 2; }
    ;;
esac
case "$KERNELS" in
  cmsis-nn|reference) KERNEL_SETS=("$KERNELS") ;;
  all) KERNEL_SETS=(cmsis-nn reference) ;;
  *) echo "get_tflm: --kernels takes cmsis-nn, reference or all, not '$KERNELS'" >&2; exit 2 ;;
esac
for kernels in "${KERNEL_SETS[@]}"; do
  for arch in "${ARCHS[@]}"; do build_lib "$arch" "$kernels"; done
done
echo "get_tflm: done. export TFLM_ROOT=$TFLM_ROOT"
