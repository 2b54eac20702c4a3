#!/bin/sh
set -eu
out=$(sh greet.sh parapipe)
[ "$out" = "Hello, parapipe!" ] || { echo "unexpected: $out"; exit 1; }
echo "ok: $out"
