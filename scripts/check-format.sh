#!/usr/bin/env bash
# The code style every change keeps: the Swift files formatted as `.swift-format` says (swift-format, which
# ships with the Swift toolchain) and no line over its 120 columns, long string literals included (split
# them, the text unchanged, as a multi-line literal with `\` continuations). Fails, naming each place.
# To apply the format: swift-format format -i -r --parallel Sources Tests Package.swift
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
if ! lint=$(swift-format lint --strict -r --parallel Sources Tests Package.swift 2>&1) || [ -n "$lint" ]; then
  echo "$lint"
  echo "check-format: swift-format lint found the above; run: swift-format format -i -r --parallel Sources Tests Package.swift"
  status=1
fi
width=$(sed -n 's/.*"lineLength" *: *\([0-9]*\).*/\1/p' .swift-format)
long=$(find Sources Tests Package.swift -name '*.swift' -print0 | sort -z \
  | xargs -0 awk -v w="$width" 'length > w { printf "%s:%d: %d columns\n", FILENAME, FNR, length }')
if [ -n "$long" ]; then
  echo "$long"
  echo "check-format: $(wc -l <<<"$long") lines over $width columns"
  status=1
fi
[ $status = 0 ] && echo "check-format: $(find Sources Tests -name '*.swift' | wc -l) Swift files formatted, none over $width columns"
exit $status
