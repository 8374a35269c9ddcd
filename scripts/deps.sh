#!/usr/bin/env bash
# deps.sh -- install the Debian packages the project builds, tests and runs with.
#
# Idempotent: it asks dpkg which packages are missing and installs only those,
# printing each one. As root it runs apt-get; as anyone else it prints the
# command to run and fails when something is missing. Package services
# (redis-server, mariadb) are never started by the install: a policy-rc.d that
# forbids it is put in place for the duration, because our scripts start their
# own servers in a scratch directory and a system-wide one would hold ports.
set -euo pipefail

PKGS=(
    build-essential pkg-config
    libevent-dev default-libmysqlclient-dev libnng-dev libcjson-dev
    libhiredis-dev libinih-dev libcmocka-dev zlib1g-dev
    redis-server redis-tools mariadb-server mariadb-client
    cppcheck clang-format gnuplot-nox curl procps iproute2 coreutils python3
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#PKGS[@]} packages present"
    exit 0
fi

echo "deps: missing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: not root; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
for p in "${missing[@]}"; do echo "deps: installing $p"; done
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} package(s)"
