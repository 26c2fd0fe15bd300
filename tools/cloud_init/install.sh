#!/usr/bin/env bash
# Unpack Debian's cloud-init package (and the one library its schema module imports that
# the project's virtualenv lacks) into tools/cloud_init/root, without installing it as a
# system service: the tests only import its schema validator (tools/cloud_init_schema.py).
# Debian's archive keeps the current build of a suite only, so the packages are named, not
# versioned; tests/test_cloud_init_schema.py prints the version it validated with.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/root"
command -v apt-get >/dev/null || { echo "error: apt-get is missing: cloud-init's schema validator is taken from Debian's cloud-init package" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
packages=(cloud-init python3-configobj)
if ! (cd "$work" && apt-get download "${packages[@]}" >/dev/null 2>&1); then
  # A fresh machine has no package lists yet.
  apt-get update -qq >/dev/null
  (cd "$work" && apt-get download "${packages[@]}" >/dev/null 2>&1)
fi
rm -rf "$root"
mkdir -p "$root"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$root"; done
dpkg-deb -f "$work"/cloud-init_*.deb Version > "$root/.version"
touch "$root/.installed"
