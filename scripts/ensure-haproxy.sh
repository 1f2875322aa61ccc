#!/usr/bin/env bash
# Make Debian's HAProxy available for the scale-out tests (`bookbazar up --api N`).
# Exit 0 when it is there (or was installed), 1 when it cannot be had on this machine.
set -u
if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's haproxy for the scale-out tests..."
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; then
    # Debian starts the packaged service where it can; the tests run their own.
    command -v service >/dev/null 2>&1 && service haproxy stop >/dev/null 2>&1
    [ -x /usr/sbin/haproxy ] && exit 0
  fi
fi
echo "NOTE: HAProxy is not installed and cannot be installed here (needs root and apt-get):"
echo "      the scale-out tests will be skipped. Install it with: apt-get install haproxy"
exit 1
