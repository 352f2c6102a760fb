#!/usr/bin/env bash
# Compiles and runs the Kotlin (JVM) and Swift (Linux) binding tests against
# the real libtah_ffi.so and the tiny-d2-a fixture model. Needs the tools of
# scripts/setup-bindings-env.sh and the library that scripts/gen-bindings.sh
# builds. Usage: test-bindings.sh [kotlin|swift]...
# (both by default). Each suite's last line is "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir=${CARGO_TARGET_DIR:-$root/target}
case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
TOOLS=${TAH_BINDINGS_TOOLS:-/var/cache/tah-bindings}
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(kotlin swift)

model=$root/tah-core/tests/fixtures/tiny-d2-a
tokenizer=$root/tah-core/tests/fixtures/qwen3-tokenizer/tokenizer.json
work=$(mktemp -d)
swift_root=$TOOLS/swift-trixie
cleanup() {
    umount "$swift_root/proc" 2>/dev/null || true
    rm -rf "$work" "$swift_root/tmp/tah-swift"
}
trap cleanup EXIT

lib_dir=$target_dir/debug
[ -f "$lib_dir/libtah_ffi.so" ] || { echo "no $lib_dir/libtah_ffi.so: run scripts/gen-bindings.sh" >&2; exit 1; }

# The fixture's greedy cases, one a line: name|mode|tokens|hex(user text)|hex(prompt).
python3 - "$model/expected.json" >"$work/cases.txt" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1], encoding="utf-8"))["cases"]:
    if c["kind"] == "single":
        tokens = ",".join(map(str, c["decode"]["tokens"]))
        print("|".join([c["name"], c["mode"], tokens, c["text"].encode().hex(), c["prompt"].encode().hex()]))
PY

run_kotlin() {
    local kotlin=$TOOLS/kotlin/node_modules/kotlin-compiler
    local jna=/usr/share/java/jna.jar
    [ -x "$kotlin/bin/kotlinc" ] && [ -f "$jna" ] ||
        { echo "Kotlin tools missing: run scripts/setup-bindings-env.sh" >&2; return 1; }
    local cp="$jna:$kotlin/lib/kotlinx-coroutines-core-jvm.jar:$kotlin/lib/kotlin-test.jar"
    echo "--- kotlin: compiling"
    "$kotlin/bin/kotlinc" -nowarn -cp "$cp" -d "$work/kotlin-tests.jar" \
        bindings/kotlin/src/main/kotlin/ai/tah/sdk/*.kt bindings/kotlin/tests/*.kt
    echo "--- kotlin: running"
    java -Djna.library.path="$lib_dir" -cp "$work/kotlin-tests.jar:$kotlin/lib/kotlin-stdlib.jar:$cp" \
        BindingsTestKt "$model" "$tokenizer" "$work/cases.txt"
}

run_swift() {
    [ -f "$swift_root/.tah-ready" ] ||
        { echo "Swift chroot missing: run scripts/setup-bindings-env.sh" >&2; return 1; }
    # Everything the test needs is copied into the chroot: sources, library, fixture.
    local w=$swift_root/tmp/tah-swift in=/tmp/tah-swift
    rm -rf "$w" && mkdir -p "$w/lib"
    cp bindings/swift/Sources/TahSDK/*.swift bindings/swift/Tests/main.swift "$w/"
    cp -r bindings/swift/Sources/TahFFI "$w/TahFFI"
    cp "$lib_dir/libtah_ffi.so" "$w/lib/"
    cp -r "$model" "$w/model"
    cp "$tokenizer" "$work/cases.txt" "$w/"
    mountpoint -q "$swift_root/proc" || mount -t proc proc "$swift_root/proc"
    echo "--- swift: compiling"
    chroot "$swift_root" /bin/sh -c "cd $in && swiftc -swift-version 5 -module-name TahTests \
        -Xcc -fmodule-map-file=$in/TahFFI/TahFFI.modulemap -I $in/TahFFI \
        TahSDK.swift TahStream.swift main.swift -L $in/lib -ltah_ffi -o swifttest"
    echo "--- swift: running"
    chroot "$swift_root" /usr/bin/env LD_LIBRARY_PATH=$in/lib \
        $in/swifttest $in/model $in/tokenizer.json $in/cases.txt
}

status=0
for suite in "${suites[@]}"; do
    start=$(date +%s)
    "run_$suite" || status=1
    echo "--- $suite: $(($(date +%s) - start)) s"
done
exit $status
