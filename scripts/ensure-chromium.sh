#!/usr/bin/env bash
# Make Debian's Chromium available for the browser tests (never a browser download).
# Exit 0 when it is there (or was installed), 1 when it cannot be had on this machine.
set -u
chromium="${BOOKBAZAR_CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests..."
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
    [ -x "$chromium" ] && exit 0
  fi
fi
echo "NOTE: Chromium is not installed and cannot be installed here (needs root and apt-get):"
echo "      the browser tests will be skipped. Install it with: apt-get install chromium"
exit 1
