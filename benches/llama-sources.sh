#!/usr/bin/env bash
# Fetches llama.cpp's sources as vendored in the PyPI sdist of
# llama-cpp-python (the version both comparison scripts pin) into DIR, once,
# and prints the path of `vendor/llama.cpp`. The sdist's address comes from
# PyPI's JSON simple API (pip would build the package to download it).
#   benches/llama-sources.sh DIR
set -euo pipefail
VERSION=0.3.36
dir=$1
src=$dir/llama_cpp_python-$VERSION/vendor/llama.cpp
if [ ! -f "$src/CMakeLists.txt" ]; then
    mkdir -p "$dir"
    url=$(curl -fsS -H "Accept: application/vnd.pypi.simple.v1+json" \
        https://pypi.org/simple/llama-cpp-python/ | python3 -c "
import json, sys
files = json.load(sys.stdin)['files']
print(next(f['url'] for f in files if f['filename'] == 'llama_cpp_python-$VERSION.tar.gz'))")
    curl -fsSL "$url" -o "$dir/sdist.tar.gz"
    tar -xzf "$dir/sdist.tar.gz" -C "$dir"
    rm "$dir/sdist.tar.gz"
fi
echo "$src"
