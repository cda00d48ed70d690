#!/bin/sh
# Print the stack `make env` installs on this machine: "modern" or "default" (see "Supported platforms" in README.md).
#   modern  (environment.modern.yml, requirements.modern.lock.txt): TFDV 1.21, pandas 2, numpy 2. Its TFDV ships
#           wheels for macOS on Apple Silicon (macosx_11_0_arm64) and Linux x86_64 with glibc >= 2.39 only.
#   default (environment.yml, requirements.lock.txt): TFDV 1.16.1, pandas 1.5, numpy 1.26, for Linux x86_64 with
#           glibc 2.17 to 2.38 (e.g. Debian 12, Ubuntu 22.04, RHEL 9).
# Override the choice with `make env STACK=modern|default`. PLATFORM_OS, PLATFORM_ARCH and PLATFORM_GLIBC stand in
# for `uname -s`, `uname -m` and the C library's version, so the tests can ask about other machines.
warn() { echo "platform_stack: $*" >&2; }

os=${PLATFORM_OS:-$(uname -s)}
arch=${PLATFORM_ARCH:-$(uname -m)}
case "$os" in
  Darwin)
    stack=modern
    [ "$arch" = arm64 ] || warn "TFDV 1.21 publishes macOS wheels for Apple Silicon (arm64) only, not $arch: install will fail" ;;
  Linux)
    if [ -n "${PLATFORM_GLIBC+set}" ]; then
      glibc=$PLATFORM_GLIBC
    else
      glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc //p')
      [ -n "$glibc" ] || glibc=$(ldd --version 2>/dev/null | sed -n '1s/.* \([0-9][0-9]*\.[0-9][0-9]*\)$/\1/p')
    fi
    major=${glibc%%.*}
    minor=${glibc#*.}; minor=${minor%%.*}
    case "$major$minor" in
      ''|*[!0-9]*) warn "no glibc found (musl?): TFDV ships manylinux wheels only, install will fail"; stack=default ;;
      *) if [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 39 ]; }; then stack=modern; else stack=default; fi ;;
    esac
    [ "$arch" = x86_64 ] || warn "TFDV publishes Linux wheels for x86_64 only, not $arch: install will fail" ;;
  *)
    warn "unsupported system $os (TFDV ships Linux x86_64 and macOS arm64 wheels): use WSL2 or a Linux container"
    stack=default ;;
esac
echo "$stack"
