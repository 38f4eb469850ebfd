#!/usr/bin/env bash
# demo.sh BUILD: what `make demo` runs once the build is done.
set -euo pipefail
build=${1:-build}
if [ -x "$build/examples/mnist_cnn" ]; then
    exec "$build/baton" run -n 2 -- "$build/examples/mnist_cnn" --epochs 1
fi
exec "$build/baton" run -n 2 -- "$build/examples/hello"
