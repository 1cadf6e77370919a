#!/bin/sh
# POST_BUILD: the module must exist and carry the header PRE_BUILD generated.
set -e
test -f "$1"
grep -q KMF_BUILT_FOR src/generated.h
echo "check-built.sh: $1 is there"
