#!/bin/sh
# Greets whoever is named, with $GREETING (default "Hi").
set -eu
echo "${GREETING:-Hi}, ${1:-world}!"
