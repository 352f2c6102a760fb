#!/usr/bin/env bash
# Compiles and runs the Kotlin (JVM) and Swift (Linux) end-to-end tests
# against the real libtah_ffi.so, the tiny-d2-a fixture model and the default
# GGUF model (models/arith-tah.gguf). Needs the
# tools of scripts/setup-bindings-env.sh and the library that
# scripts/gen-bindings.sh builds. Usage:
#   test-bindings.sh [kotlin|kotlin-app|swift|swift-app]...   (all by default)
# kotlin, swift: the bindings and their facades (bindings/*/tests).
# kotlin-app, swift-app: the sample apps' shared logic (android/shared-logic,
#   ios/Sources/TahAppCore), compiled from the same sources the apps use.
# One invocation compiles each language once for all its suites. Each suite's
# last line is "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir=${CARGO_TARGET_DIR:-$root/target}
case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
TOOLS=${TAH_BINDINGS_TOOLS:-/var/cache/tah-bindings}
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(kotlin kotlin-app swift swift-app)

model=$root/tah-core/tests/fixtures/tiny-d2-a
tokenizer=$root/tah-core/tests/fixtures/qwen3-tokenizer/tokenizer.json
# A GGUF model (the default one): descriptor sources, trims of mapped weights.
gguf=$root/models/arith-tah.gguf
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

kotlin=$TOOLS/kotlin/node_modules/kotlin-compiler
jna=/usr/share/java/jna.jar
kotlin_cp="$jna:$kotlin/lib/kotlinx-coroutines-core-jvm.jar:$kotlin/lib/kotlin-test.jar"
kotlin_jar=$work/kotlin-tests.jar

# One kotlinc run for both Kotlin suites (the compiler's start-up and the
# generated bindings dominate the time).
kotlin_built=""
compile_kotlin() {
    [ -z "$kotlin_built" ] || return "$kotlin_built"
    kotlin_built=1
    [ -x "$kotlin/bin/kotlinc" ] && [ -f "$jna" ] ||
        { echo "Kotlin tools missing: run scripts/setup-bindings-env.sh" >&2; return 1; }
    echo "--- kotlin: compiling (bindings, facade, app logic, tests)"
    "$kotlin/bin/kotlinc" -nowarn -cp "$kotlin_cp" -d "$kotlin_jar" \
        bindings/kotlin/src/main/kotlin/ai/tah/sdk/*.kt bindings/kotlin/tests/*.kt \
        android/shared-logic/src/main/kotlin/ai/tah/app/*.kt android/shared-logic/tests/*.kt || return 1
    kotlin_built=0
}

run_kotlin_main() {
    compile_kotlin || return 1
    java -Djna.library.path="$lib_dir" -cp "$kotlin_jar:$kotlin/lib/kotlin-stdlib.jar:$kotlin_cp" \
        "$1" "$model" "$tokenizer" "$work/cases.txt" "$gguf"
}

run_kotlin() {
    run_kotlin_main BindingsTestKt
}

run_kotlin-app() {
    run_kotlin_main ai.tah.app.tests.AppLogicTestKt
}

# Everything the Swift tests need is copied into the chroot: sources, library, fixture.
swift_work=$swift_root/tmp/tah-swift
swift_in=/tmp/tah-swift

in_chroot() {
    chroot "$swift_root" /bin/sh -c "cd $swift_in && $1"
}

# Builds the modules as the Swift package does (ios/Package.swift): TahSDK
# (generated bindings + facade) over the C module TahFFI, and TahAppCore over
# TahSDK, each a shared library that the test programs import.
swift_built=""
compile_swift() {
    [ -z "$swift_built" ] || return "$swift_built"
    swift_built=1
    [ -f "$swift_root/.tah-ready" ] ||
        { echo "Swift chroot missing: run scripts/setup-bindings-env.sh" >&2; return 1; }
    rm -rf "$swift_work" && mkdir -p "$swift_work/lib" "$swift_work/modules" "$swift_work/bin"
    cp -r bindings/swift/Sources/TahSDK bindings/swift/Sources/TahFFI bindings/swift/Tests "$swift_work/"
    cp -r ios/Sources/TahAppCore "$swift_work/TahAppCore"
    cp -r ios/Tests/TahAppCoreChecks "$swift_work/TahAppCoreChecks"
    cp "$lib_dir/libtah_ffi.so" "$swift_work/lib/"
    cp -r "$model" "$swift_work/model"
    cp "$tokenizer" "$work/cases.txt" "$gguf" "$swift_work/"
    mountpoint -q "$swift_root/proc" || mount -t proc proc "$swift_root/proc"
    echo "--- swift: compiling (TahSDK, TahAppCore)"
    in_chroot "swiftc -swift-version 5 -parse-as-library -emit-library -emit-module -module-name TahSDK \
        -emit-module-path modules/TahSDK.swiftmodule $swift_ffi TahSDK/*.swift \
        -L lib -ltah_ffi -o lib/libTahSDK.so" || return 1
    in_chroot "swiftc -swift-version 5 -parse-as-library -emit-library -emit-module -module-name TahAppCore \
        -emit-module-path modules/TahAppCore.swiftmodule $swift_ffi -I modules TahAppCore/*.swift \
        -L lib -lTahSDK $swift_observation -o lib/libTahAppCore.so" || return 1
    swift_built=0
}
swift_ffi="-Xcc -fmodule-map-file=$swift_in/TahFFI/TahFFI.modulemap -I $swift_in/TahFFI"
# Debian's libswiftObservation.so references swift::threading::fatal, which no
# library of the package exports (a packaging defect; Swift on macOS and
# swift.org's Linux builds link it in). It is only reached on a fatal error.
swift_observation="-Xlinker --allow-shlib-undefined"

run_swift_program() {
    local name=$1 libs=$2
    shift 2
    compile_swift || return 1
    echo "--- $name: compiling"
    in_chroot "swiftc -swift-version 5 -module-name $name $swift_ffi -I modules $* \
        -L lib $libs $swift_observation -o bin/$name" || return 1
    echo "--- $name: running"
    chroot "$swift_root" /usr/bin/env LD_LIBRARY_PATH=$swift_in/lib \
        $swift_in/bin/$name $swift_in/model $swift_in/tokenizer.json $swift_in/cases.txt \
        $swift_in/$(basename "$gguf")
}

run_swift() {
    run_swift_program TahTests "-lTahSDK" Tests/Harness.swift Tests/Lifecycle.swift Tests/main.swift
}

run_swift-app() {
    run_swift_program TahAppCoreChecks "-lTahAppCore -lTahSDK" Tests/Harness.swift TahAppCoreChecks/*.swift
}

status=0
for suite in "${suites[@]}"; do
    start=$(date +%s)
    "run_$suite" || status=1
    echo "--- $suite: $(($(date +%s) - start)) s"
done
exit $status
