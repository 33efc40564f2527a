#!/usr/bin/env bash
# Cross-builds homehub for the Raspberry Pi 4 (aarch64, Pi OS bookworm 64-bit)
# on a Debian bookworm x86_64 host, then runs the result under qemu-user.
#
#   bash packaging/arm64.sh
#
# 1. Host tools: packaging/deps.sh (gcc-aarch64-linux-gnu, qemu-user-static,
#    the rustup target, ...).
# 2. An arm64 sysroot in target/arm64-sysroot/root: the arm64 .debs of the
#    GStreamer dev packages and their dependency closure, unpacked with
#    `dpkg-deb -x`. Nothing arm64 is ever installed on the host, and the host's
#    dpkg/apt configuration is not touched: apt runs with a private
#    configuration and state (target/arm64-sysroot/apt) whose only
#    architecture is arm64 and whose dpkg status starts empty, so apt resolves
#    the complete closure for us. Cached: a stamp holding the recipe (package
#    lists) makes later runs skip this step, with no network access.
# 3. cargo build --release --target aarch64-unknown-linux-gnu --bin homehub,
#    with the cross environment set on that command only.
# 4. Checks the binary is aarch64 and that `homehub --version` runs under
#    qemu-aarch64-static against the sysroot.
#
# Environment knobs:
#   HOMEHUB_ARM64_RUNTIME=1  also put the GStreamer runtime plugins (base, good,
#                            bad, and their closure, ~200 MB of .debs) into the
#                            sysroot, to run real pipelines under qemu.
#   CARGO_TARGET_DIR         honoured for the build output as usual.
#
# `cargo clean` deletes the sysroot too (it lives under target/).
set -Eeuo pipefail

log() { printf 'arm64: %s\n' "$*"; }
die() { printf 'arm64: ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
triple=aarch64-unknown-linux-gnu
gnu=aarch64-linux-gnu
top=$repo/target/arm64-sysroot
root=$top/root
start=$SECONDS

# What the sysroot must hold: everything needed to link the crate.
want=(libc6-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev)
# Packages in that closure that are never linked against (runtime plugins,
# dlopen()ed GL drivers, interpreters for build tools). They are marked as
# already installed in the private dpkg status, so apt neither fetches them nor
# follows their dependencies; this cuts the download from ~200 MB to ~45 MB.
prune=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
       libgl1-mesa-dri python3 python3-distutils python3-lib2to3)
if [ "${HOMEHUB_ARM64_RUNTIME:-0}" = 1 ]; then
  prune=()
  want+=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
fi
# Bump when the way the sysroot is made changes, to force a rebuild.
recipe="homehub arm64 sysroot, recipe 1
want: ${want[*]}
prune: ${prune[*]}"

# ---------------------------------------------------------------- host tools
bash "$here/deps.sh" || die "packaging/deps.sh failed: the host tools are missing"
for tool in apt-get apt-cache dpkg-deb file realpath cargo rustup "$gnu-gcc" "$gnu-ar" qemu-aarch64-static; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed (see packaging/apt-packages.txt)"
done
installed_targets=$(rustup target list --installed)
grep -qx "$triple" <<<"$installed_targets" \
  || die "Rust target $triple is missing: rustup target add $triple"

# ------------------------------------------------------------------- sysroot
# apt with a private configuration: arm64 only, empty dpkg status, own lists
# and cache. The host's sources (Debian's mirror) and Acquire:: settings
# (proxy, date checks) are reused; the host's apt.conf.d hooks are not.
write_apt_conf() {
  local a=$top/apt
  rm -rf "$a"
  mkdir -p "$a/state/lists/partial" "$a/cache" "$a/etc/apt.conf.d" "$a/etc/preferences.d" \
           "$a/log" "$top/debs/partial"
  : > "$a/state/status"
  {
    env -u APT_CONFIG apt-config dump 2>/dev/null | grep -E '^Acquire::' | grep -v '^Acquire::IndexTargets' || true
    cat <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Sandbox::User "root";
Dir::State "$a/state";
Dir::State::status "$a/state/status";
Dir::Cache "$a/cache";
Dir::Cache::archives "$top/debs";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Etc::main "/dev/null";
Dir::Etc::parts "$a/etc/apt.conf.d";
Dir::Etc::preferences "$a/etc/preferences";
Dir::Etc::preferencesparts "$a/etc/preferences.d";
Dir::Log "$a/log";
EOF
  } > "$a/apt.conf"
}

build_sysroot() {
  local t0=$SECONDS a=$top/apt
  log "building the arm64 sysroot in ${top#"$repo"/} (about a minute; downloads from the Debian mirror)"
  mkdir -p "$top"
  rm -f "$top/stamp"
  write_apt_conf
  export APT_CONFIG=$a/apt.conf DEBIAN_FRONTEND=noninteractive

  log "fetching the arm64 package indexes"
  apt-get update -qq >"$a/log/update.txt" 2>&1 \
    || { cat "$a/log/update.txt" >&2; die "apt-get update (arm64 indexes) failed"; }

  # Mark the pruned packages as installed, at a version just above the
  # archive's (an equal version would take the archive's Depends and be
  # "reinstalled"), with no Depends of their own.
  local p info
  for p in "${prune[@]}"; do
    info=$(apt-cache show --no-all-versions "$p:arm64" 2>/dev/null) || info=
    [[ $info == *Package:* ]] || die "package $p:arm64 not found in the arm64 indexes"
    awk '/^(Package|Architecture|Multi-Arch|Provides):/ {print}
         /^Version:/ {print $0 "+notinsysroot"}' <<<"$info"
    printf 'Status: install ok installed\n\n'
  done > "$a/state/status"

  # Resolve the closure: "Inst NAME [OLD] (VERSION ARCHIVES [ARCH]) [...]".
  apt-get -s install "${want[@]}" >"$a/log/resolve.txt" 2>&1 \
    || { cat "$a/log/resolve.txt" >&2; die "apt could not resolve the arm64 dependency closure"; }
  sed -n 's/^Inst \([^ ]*\) .*(\([^ ]*\) .*\[\([^]]*\)\]).*/\1 \2 \3/p' \
      "$a/log/resolve.txt" | sort > "$top/packages.new"
  [ "$(wc -l < "$top/packages.new")" = "$(grep -c '^Inst ' "$a/log/resolve.txt")" ] \
    || die "could not parse apt's resolution (see $a/log/resolve.txt)"
  [ -s "$top/packages.new" ] || die "resolved an empty package list (see $a/log/resolve.txt)"
  log "$(wc -l < "$top/packages.new") packages in the closure; downloading"

  apt-get install -d -y -qq "${want[@]}" >"$a/log/download.txt" 2>&1 \
    || { cat "$a/log/download.txt" >&2; die "downloading the arm64 .debs failed"; }

  # The .deb files apt saved (epoch ':' is stored as %3a); drop stale ones.
  local name ver arch f
  : > "$top/debs.list"
  while read -r name ver arch; do
    f=${name}_${ver//:/%3a}_${arch}.deb
    [ -f "$top/debs/$f" ] || die "expected $top/debs/$f after the download"
    echo "$f" >> "$top/debs.list"
  done < "$top/packages.new"
  for f in "$top"/debs/*.deb; do
    grep -qxF "${f##*/}" "$top/debs.list" || rm -f "$f"
  done

  log "unpacking $(wc -l < "$top/debs.list") .debs"
  rm -rf "$root.new" "$root"
  mkdir -p "$root.new"
  while read -r f; do
    dpkg-deb -x "$top/debs/$f" "$root.new" || die "dpkg-deb -x $f failed"
  done < "$top/debs.list"
  rm -rf "$root.new/usr/share/doc" "$root.new/usr/share/man" "$root.new/usr/share/locale"

  # Merged /usr, as on Pi OS bookworm: /lib, /bin, /sbin -> usr/...
  local d new=$root.new
  for d in bin sbin lib; do
    if [ -d "$new/$d" ] && [ ! -L "$new/$d" ]; then
      mkdir -p "$new/usr/$d"
      cp -a "$new/$d/." "$new/usr/$d/"
      rm -rf "${new:?}/$d"
    fi
    [ -e "$new/$d" ] || ln -s "usr/$d" "$new/$d"
  done

  # Absolute symlinks (libm.so -> /lib/aarch64-linux-gnu/libm.so.6, ...) would
  # point into the host: make them relative, inside the sysroot.
  local link target n=0
  while IFS= read -r -d '' link; do
    target=$(readlink "$link")
    case $target in
      /*) ln -sfn "$(realpath -m -s --relative-to="$(dirname "$link")" "$root.new$target")" "$link"
          n=$((n + 1)) ;;
    esac
  done < <(find "$root.new" -type l -print0)
  log "made $n absolute symlinks relative"

  [ -e "$root.new/usr/lib/$gnu/pkgconfig/gstreamer-rtsp-server-1.0.pc" ] \
    || die "sysroot lacks gstreamer-rtsp-server-1.0.pc"
  [ -e "$root.new/lib/ld-linux-aarch64.so.1" ] || die "sysroot lacks the dynamic loader"

  mv "$root.new" "$root"
  mv "$top/packages.new" "$top/packages.txt"
  printf '%s\n' "$recipe" > "$top/stamp"
  log "sysroot ready in $((SECONDS - t0)) s ($(du -sh "$root" | cut -f1) unpacked, $(du -sh "$top/debs" | cut -f1) of .debs)"
  unset APT_CONFIG
}

if [ -f "$top/stamp" ] && [ -d "$root" ] && [ "$(cat "$top/stamp")" = "$recipe" ]; then
  log "sysroot up to date (${top#"$repo"/}; rm $top/stamp to rebuild)"
else
  build_sysroot
fi

# --------------------------------------------------------------------- build
root=$(realpath "$root")   # ld relocates linker scripts only under the exact sysroot path
libdirs=("$root/usr/lib/$gnu" "$root/lib/$gnu")
rustflags="-C link-arg=--sysroot=$root"
for d in "${libdirs[@]}"; do
  rustflags+=" -C link-arg=-L$d -C link-arg=-Wl,-rpath-link,$d"
done
locked=()
[ -f "$repo/Cargo.lock" ] && locked=(--locked)

log "cargo build --release --target $triple --bin homehub (several minutes when cold)"
t0=$SECONDS
(
  cd "$repo"
  # RUSTFLAGS would override the per-target flags, PKG_CONFIG_PATH would add
  # the host's .pc files: keep both out of this one command.
  env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u PKG_CONFIG_PATH \
    PKG_CONFIG_ALLOW_CROSS=1 \
    PKG_CONFIG_SYSROOT_DIR="$root" \
    PKG_CONFIG_LIBDIR="$root/usr/lib/$gnu/pkgconfig:$root/usr/share/pkgconfig" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$gnu-gcc" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$rustflags" \
    CC_aarch64_unknown_linux_gnu="$gnu-gcc" \
    AR_aarch64_unknown_linux_gnu="$gnu-ar" \
    CFLAGS_aarch64_unknown_linux_gnu="--sysroot=$root" \
    cargo build --release --target "$triple" --bin homehub "${locked[@]}"
) || die "the aarch64 cargo build failed"
log "build done in $((SECONDS - t0)) s"

# -------------------------------------------------------------------- verify
bin=${CARGO_TARGET_DIR:-$repo/target}/$triple/release/homehub
[ -x "$bin" ] || die "no binary at $bin"
desc=$(file -b "$bin")
case $desc in
  *ELF*64-bit*ARM\ aarch64*) log "binary: $bin" ; log "  $desc" ;;
  *) die "$bin is not an aarch64 ELF: $desc" ;;
esac
out=$(GST_REGISTRY_FORK=no qemu-aarch64-static -L "$root" "$bin" --version 2>&1) \
  || die "the aarch64 binary failed under qemu-aarch64-static: $out"
grep -q '^homehub ' <<<"$out" \
  || die "'homehub --version' under qemu printed no 'homehub <version>' line: $out"
log "qemu run ok: $(grep -m1 '^homehub ' <<<"$out")"
log "done in $((SECONDS - start)) s"
