#!/bin/sh
# Installs the given Debian packages, refreshing the package lists only
# when a first attempt fails (a fresh machine may have none).  Uses sudo
# unless run as root.
set -e
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing: $*"
$sudo apt-get install -y -q "$@" || {
	$sudo apt-get update -q
	$sudo apt-get install -y -q "$@"
}
