#!/usr/bin/env bash
# Get Renode, the emulator of the stm32l4 firmware target (tflm_app/targets/stm32l4/).
#
#   scripts/get_renode.sh            # prints the renode command to use (export TINYLOC_RENODE=...)
#
# With `renode` on PATH (a release package from https://renode.io) that is used as it is.
# Otherwise Renode v1.15.1 is built from source into RENODE_ROOT: the newest Renode needs the
# .NET SDK, which Debian 12 does not package; v1.15.1 still builds with Debian's Mono 6.8.
# Its sources come from git at the commits v1.15.1 pins (its submodules, and the nested ones),
# nothing of it enters this repository.
#
# Environment:
#   RENODE_ROOT       where the Renode tree is built. Default: ~/.cache/tinyloc/renode.
#                     A tree with a built Renode is used as it is.
#   TINYLOC_GIT_BASE  where <owner>/<name> git repositories are found. Default:
#                     https://github.com. Offline, a folder of clones or bare copies laid out as
#                     <owner>/<name> (the repositories in SOURCES below).
#
# Needs Mono and GTK# 2 (Debian: mono-complete gtk-sharp2), installed with apt when run as root.
# The build takes about 6 minutes on 2 cores.
set -euo pipefail

RENODE_TAG_COMMIT=bef0c7b332615484b5e7cea61c63545ca6ee99b1  # tag v1.15.1
# path in the Renode tree                                owner/name                      commit
SOURCES=(
  ".                                                     renode/renode                   $RENODE_TAG_COMMIT"
  "src/Infrastructure                                    renode/renode-infrastructure    e72d6fe2b39490737b7057828541b7a14a4a48c5"
  "src/Infrastructure/src/Emulator/Cores/tlib            antmicro/tlib                   fd8fad5a322a0abf3f52b10c4e949b8cdfe1d98d"
  "src/Infrastructure/src/Emulator/Cores/tlib/softfloat-3 antmicro/berkeley-softfloat-3  02911d5b50e5d6473e3f3ad0a871b376736db023"
  "lib/resources                                         renode/renode-resources         fc84585d8337891ef03eae703f855335faa0996e"
  "lib/termsharp                                         antmicro/TermSharp              fe839efdd60ca904b3cc3900576d8e2621c873e1"
  "lib/termsharp/xwt                                     antmicro/xwt                    51b0bf7ce75828279c5a9a29c6b765ee5b09e404"
  "lib/FdtSharp                                          antmicro/FdtSharp               e379e8ae696676afffed2f33dd8083855af00f2f"
  "lib/Packet.Net                                        antmicro/Packet.Net             2fe74fd257f6d6f86076c100952178f347098b3d"
  "lib/AntShell                                          antmicro/AntShell               b1d3d03d602581fc2bed6db586b5e5c3388456c7"
  "lib/ELFSharp                                          antmicro/elfsharp               353a1acee84b783093707ce46a2b1e646a2381b9"
  "lib/Migrant                                           antmicro/Migrant                0a5a56606154c8eda98a57ccb6c2146e795dad89"
  "lib/cctask                                            antmicro/cctask                 21191980714198a47b42e8bbd68b06ef142f6e27"
  "lib/options-parser                                    antmicro/options-parser         ee6147e85cbc38e1b1434f2175a3427e194e6a5f"
  "lib/CxxDemangler                                      antmicro/CxxDemangler           b0c2a820f28a7bdedb85575bfca6447c9e7fa955"
  "lib/InpliTftpServer                                   antmicro/InpliTftpServer        33e5ab24eaaab488e9a94f1a40d5d6ae2f7f02f1"
  "lib/BigGustave                                        antmicro/BigGustave             e7bfa5873f2300e6e87c185f466e227762dbf4b2"
  "lib/bc-csharp                                         antmicro/bc-csharp              a6b0afe1f573266e240c6bdd9bd9bde50846abdc"
  "tools/dts2repl                                        antmicro/dts2repl               f3a5ca54a6642c7e8e539bc5e62e676a4c6aa2a1"
)

case "${1:-}" in
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  "") ;;
  *) echo "get_renode: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

if command -v renode >/dev/null; then
  echo "get_renode: using $(command -v renode) from PATH"
  echo "export TINYLOC_RENODE=$(command -v renode)"
  exit 0
fi

RENODE_ROOT=${RENODE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/tinyloc/renode}
GIT_BASE=${TINYLOC_GIT_BASE:-https://github.com}
LAUNCHER=$RENODE_ROOT/renode
BUILT=$RENODE_ROOT/output/bin/Release/Renode.exe

if [ -f "$BUILT" ]; then
  echo "get_renode: using the Renode built in $RENODE_ROOT"
  echo "export TINYLOC_RENODE=$LAUNCHER"
  exit 0
fi

# Mono (mcs, xbuild) and GTK# 2, which Renode's non-GUI build still references.
if ! command -v mcs >/dev/null || ! command -v xbuild >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "get_renode: installing mono-complete gtk-sharp2 with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mono-complete gtk-sharp2 >/dev/null
  else
    echo "get_renode: Mono is missing; install it with: sudo apt-get install mono-complete gtk-sharp2" >&2
    exit 1
  fi
fi

MISSING=()  # files of the pinned commits that the git copies do not hold

# Write the tree of <owner>/<name> at <commit> into DEST. A local repository is read in place;
# a remote one is fetched into a scratch repository first. Files whose blobs the copy lacks
# are listed in MISSING instead of failing the whole export.
export_tree() {
  local repo=$1 commit=$2 dest=$3 gitdir scratch=
  if [ -d "$GIT_BASE/$repo" ]; then
    gitdir=$GIT_BASE/$repo
  else
    scratch=$(mktemp -d)
    git -C "$scratch" init -q
    git -C "$scratch" fetch -q --depth 1 "$GIT_BASE/$repo" "$commit" 2>/dev/null \
      || git -C "$scratch" fetch -q "$GIT_BASE/$repo" '+refs/heads/*:refs/remotes/origin/*' || {
        echo "get_renode: cannot fetch $repo from $GIT_BASE (see TINYLOC_GIT_BASE)" >&2; rm -rf "$scratch"; exit 1; }
    gitdir=$scratch/.git
  fi
  git --git-dir="$gitdir" cat-file -e "$commit^{commit}" 2>/dev/null || {
    echo "get_renode: $repo has no commit $commit (in $GIT_BASE/$repo)" >&2; exit 1; }
  mkdir -p "$dest"
  if ! git --git-dir="$gitdir" archive "$commit" 2>/dev/null | tar -x -C "$dest" 2>/dev/null; then
    # Some blob is absent from this copy: write the tree file by file, listing what is missing.
    local mode type sha path
    while IFS=$'\t' read -r meta path; do
      read -r mode type sha <<<"$meta"
      [ "$type" = blob ] || continue
      mkdir -p "$dest/$(dirname "$path")"
      if ! git --git-dir="$gitdir" cat-file -e "$sha" 2>/dev/null; then
        MISSING+=("$repo:$path")
      elif [ "$mode" = 120000 ]; then
        ln -sfn "$(git --git-dir="$gitdir" cat-file blob "$sha")" "$dest/$path"
      else
        git --git-dir="$gitdir" cat-file blob "$sha" > "$dest/$path"
        [ "$mode" = 100755 ] && chmod +x "$dest/$path"
      fi
    done < <(git --git-dir="$gitdir" ls-tree -r "$commit")
  fi
  [ -z "$scratch" ] || rm -rf "$scratch"
}

partial=$RENODE_ROOT.partial
rm -rf "$partial"
for entry in "${SOURCES[@]}"; do
  read -r path repo commit <<<"$entry"
  echo "get_renode: $repo@${commit:0:7} -> $path"
  export_tree "$repo" "$commit" "$partial/$path"
done

# Substitutions for blobs the copies lack, said out loud; the real files are used when present.
resources=$partial/lib/resources
for item in "${MISSING[@]}"; do
  case "$item" in
    renode/renode-resources:libraries/IronPython.StdLib.dll)
      echo "get_renode: NOTE: IronPython.StdLib.dll is absent from the renode-resources copy; an empty"
      echo "  stand-in assembly takes its place: Renode starts, but Python scripts cannot import the standard library"
      printf 'namespace IronPythonStdLibStandIn { }\n' > "$partial/stdlib_stand_in.cs"
      mcs -target:library -out:"$resources/libraries/IronPython.StdLib.dll" "$partial/stdlib_stand_in.cs" >/dev/null
      ;;
    renode/renode-resources:llvm/libllvm-disas.*)
      ;;  # handled below
    antmicro/BigGustave:src/BigGustave.Tests/*)
      ;;  # test data of a library, not built
    *)
      echo "get_renode: $item is absent from the git copy and Renode cannot be built without it" >&2
      exit 1
      ;;
  esac
done
if [ ! -f "$resources/llvm/libllvm-disas.so" ]; then
  echo "get_renode: NOTE: the LLVM disassembler library (libllvm-disas.so) is absent from the renode-resources"
  echo "  copy; build.sh's copy of it is skipped: Renode runs, but cannot disassemble"
  sed -i 's|^\(  *cp .*libllvm-disas\.\*.*\)$|\1 2>/dev/null \|\| true|' "$partial/build.sh"
fi

# No .git in the exported tree: build.sh then neither updates submodules nor fetches resources.
echo "get_renode: building Renode v1.15.1 in $RENODE_ROOT (about 6 minutes on 2 cores)"
(cd "$partial" && ./build.sh --no-gui) > "$partial/build.log" 2>&1 || {
  echo "get_renode: the Renode build failed; the end of $RENODE_ROOT.partial/build.log:" >&2
  tail -20 "$partial/build.log" >&2; exit 1; }
rm -rf "$RENODE_ROOT"
mv "$partial" "$RENODE_ROOT"
echo "get_renode: done."
echo "export TINYLOC_RENODE=$LAUNCHER"
