#!/usr/bin/env bash
# `make lint`: clang-format check, clang-tidy (with the build's compile_commands.json) and cppcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/install-deps.sh
mapfile -t files < <(git ls-files 'src/*.cpp' 'src/*.hpp' 'include/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp')
echo "clang-format: ${#files[@]} files"
clang-format --dry-run -Werror "${files[@]}"
[ -f "$build/compile_commands.json" ] || scripts/build.sh "$build"
mapfile -t sources < <(git ls-files 'src/*.cpp')
echo "clang-tidy: ${#sources[@]} files"
# The compile commands are GCC's: clang does not know some of its warning flags (-Wno-restrict).
clang-tidy -p "$build" --quiet --extra-arg=-Wno-unknown-warning-option "${sources[@]}" 2>/dev/null
echo "cppcheck"
cppcheck --quiet --error-exitcode=1 --std=c++20 --language=c++ --inline-suppr \
    --enable=warning,performance,portability --suppress=missingIncludeSystem \
    -I include -I src src
echo "lint: clean"
