#!/usr/bin/env bash
# Installs what building and testing the Kotlin and Swift bindings needs on a
# Debian 12 (bookworm) Linux machine, as root. Idempotent: every step checks
# for its result first, so a rerun on a prepared machine takes a second.
#
#   kotlinc 2.4.20 (npm `kotlin-compiler`, a full distribution that also ships
#       kotlin-stdlib, kotlin-test and kotlinx-coroutines-core-jvm)
#                                   -> $TAH_BINDINGS_TOOLS/kotlin
#   JNA (Debian `libjna-java`)      -> /usr/share/java/jna.jar
#   Swift 6 (Debian trixie `swiftlang` in a minbase chroot; bookworm has no
#       Swift compiler)              -> $TAH_BINDINGS_TOOLS/swift-trixie
#
# TAH_BINDINGS_TOOLS defaults to /var/cache/tah-bindings, outside the work
# tree, so that fresh clones on the same machine reuse it.
set -euo pipefail

TOOLS=${TAH_BINDINGS_TOOLS:-/var/cache/tah-bindings}
KOTLIN_VERSION=2.4.20
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KOTLIN_DIR="$TOOLS/kotlin"
SWIFT_ROOT="$TOOLS/swift-trixie"

log() { echo "[setup-bindings-env] $*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-bindings-env.sh must run as root (apt-get, debootstrap, chroot)" >&2
    exit 1
fi
mkdir -p "$TOOLS"

# 1. Host packages: JNA for the JVM tests, debootstrap for the Swift chroot.
missing=()
[ -f /usr/share/java/jna.jar ] || missing+=(libjna-java)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "host packages present"
fi

# 2. The Kotlin compiler (with its stdlib, kotlin-test and coroutines jars).
kotlinc="$KOTLIN_DIR/node_modules/kotlin-compiler/bin/kotlinc"
if [ -x "$kotlinc" ] && grep -q "\"version\": \"$KOTLIN_VERSION\"" \
    "$KOTLIN_DIR/node_modules/kotlin-compiler/package.json" 2>/dev/null; then
    log "kotlinc $KOTLIN_VERSION present"
else
    log "npm install kotlin-compiler@$KOTLIN_VERSION"
    mkdir -p "$KOTLIN_DIR"
    npm install --prefix "$KOTLIN_DIR" --no-save --loglevel=error "kotlin-compiler@$KOTLIN_VERSION"
fi
for jar in kotlin-stdlib.jar kotlin-test.jar kotlinx-coroutines-core-jvm.jar; do
    [ -f "$KOTLIN_DIR/node_modules/kotlin-compiler/lib/$jar" ] ||
        { echo "kotlin-compiler is missing lib/$jar" >&2; exit 1; }
done

# 3. Swift: a Debian trixie chroot with swiftlang and the C headers it links
# against. A chroot without the completion marker is a failed attempt: redo it.
if [ -f "$SWIFT_ROOT/.tah-ready" ]; then
    log "swift chroot present"
else
    if [ -d "$SWIFT_ROOT" ]; then
        log "removing incomplete chroot $SWIFT_ROOT"
        umount "$SWIFT_ROOT/proc" 2>/dev/null || true
        rm -rf --one-file-system "$SWIFT_ROOT"
    fi
    log "debootstrap trixie -> $SWIFT_ROOT"
    debootstrap --variant=minbase trixie "$SWIFT_ROOT" "$DEBIAN_MIRROR" >"$TOOLS/debootstrap.log" 2>&1 ||
        { tail -20 "$TOOLS/debootstrap.log" >&2; exit 1; }
    trap 'umount "$SWIFT_ROOT/proc" 2>/dev/null || true' EXIT
    mount -t proc proc "$SWIFT_ROOT/proc"
    log "apt-get install swiftlang libc6-dev (in the chroot)"
    chroot "$SWIFT_ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends swiftlang libc6-dev >/dev/null'
    chroot "$SWIFT_ROOT" swiftc --version
    touch "$SWIFT_ROOT/.tah-ready"
fi
log "ready: kotlinc=$kotlinc swift-root=$SWIFT_ROOT"
