#!/bin/sh
# Runs every test program given as an argument, then the Python client
# test; prints one line per program and a closing summary.  Exits non-zero
# when anything failed.
passed=0
failed=0
for t in "$@"; do
	echo "== $t"
	if "$t"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAILED: $t"
	fi
done
echo "== tests/test_python.py"
if /usr/bin/python3 "$(dirname "$0")/test_python.py"; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
	echo "FAILED: tests/test_python.py"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
