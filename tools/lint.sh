#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tools/lint.sh [--complexity BUILD_DIR]
# Fails when a tracked C or C++ file differs from .clang-format (fix: tools/lint.sh --fix).
# With --complexity, also lists the daemon functions above 80 lines or a cognitive
# complexity of 25 (clang-tidy; BUILD_DIR must hold compile_commands.json, e.g.
# cmake -B build -DCMAKE_EXPORT_COMPILE_COMMANDS=ON). engine.c:rasm_add is exempt.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$SRC"

mapfile -t files < <(git ls-files '*.c' '*.h' '*.cc' ':!:*.skel.h')
case "${1:-}" in
--fix)
	clang-format -i "${files[@]}"
	exit 0
	;;
--complexity)
	build=${2:?usage: tools/lint.sh --complexity BUILD_DIR}
	mapfile -t daemon < <(git ls-files 'daemon/*.c' 'daemon/**/*.c')
	out=$(clang-tidy -p "$build" --quiet \
		--checks='-*,readability-function-cognitive-complexity,readability-function-size' \
		--config='{CheckOptions: [{key: readability-function-cognitive-complexity.Threshold, value: 25},
			{key: readability-function-size.LineThreshold, value: 80}]}' \
		"${daemon[@]}" 2>/dev/null | grep -E 'warning: function' | grep -v "'rasm_add'" || true)
	if [ -n "$out" ]; then
		printf '%s\n' "$out"
		echo "lint: $(printf '%s\n' "$out" | wc -l) function(s) above the limits" >&2
		exit 1
	fi
	echo "lint: every daemon function within 80 lines and complexity 25 (rasm_add exempt)"
	exit 0
	;;
esac
bad=$(clang-format --dry-run "${files[@]}" 2>&1 | grep -oE '^[^:]+:[0-9]+:[0-9]+: (warning|error)' |
	cut -d: -f1 | sort -u || true)
if [ -n "$bad" ]; then
	printf 'not formatted as .clang-format says (run tools/lint.sh --fix):\n%s\n' "$bad" >&2
	exit 1
fi
echo "lint: ${#files[@]} files formatted as .clang-format says"
