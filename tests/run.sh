#!/bin/sh
# Runs every test given as an argument (a program, or a Python script run
# with Debian's python3); prints one line per test and a closing summary.
# Exits non-zero when anything failed.
passed=0
failed=0
for t in "$@"; do
	echo "== $t"
	case "$t" in
	*.py) set -- /usr/bin/python3 "$t" ;;
	*) set -- "$t" ;;
	esac
	if "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAILED: $t"
	fi
done
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
