#!/usr/bin/env bash
# Makes a real OpenSSH server available for the ssh target's tests
# (test/integration/targetMatrix.test.ts runs /usr/sbin/sshd on a loopback
# port with keys it generates). Never fails the caller: without sshd those
# tests say why, and fail under CI=true.
set -uo pipefail
if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; then
  echo "ok sshd (/usr/sbin/sshd)"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install-sshd: installing Debian's openssh-server and openssh-client for the ssh target's tests ..." >&2
  # policy-rc.d keeps the package from starting a system sshd on port 22: the tests start their own.
  if (apt-get update -qq && printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client; status=$?; rm -f /usr/sbin/policy-rc.d; exit $status) >/tmp/ferry-install-sshd.log 2>&1; then
    echo "ok sshd (/usr/sbin/sshd, from apt)"
    exit 0
  fi
  echo "install-sshd: apt-get could not install openssh-server (see /tmp/ferry-install-sshd.log)" >&2
  exit 0
fi
echo "install-sshd: no /usr/sbin/sshd and no root apt-get to install it (Debian package openssh-server); the ssh target's tests will say so" >&2
exit 0
