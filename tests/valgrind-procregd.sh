#!/bin/sh
# Runs procregd under valgrind for the integration tests: any invalid
# access or leak makes the daemon exit 99, which the tests' clean-exit
# check (t_daemon_stop) turns into a failure.  The report goes to
# $VALGRIND_LOG_DIR (default /tmp), one file per daemon.
dir=$(dirname "$0")
exec valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible \
	--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
	--log-file="${VALGRIND_LOG_DIR:-/tmp}/procregd-valgrind.%p.log" \
	"$dir/../procregd" "$@"
