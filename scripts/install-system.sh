#!/usr/bin/env bash
# System tools: espeak-ng and flite (speech synthesis for the offline corpus), sox, sctk (NIST sclite
# scoring), libsndfile. Installed with apt-get when missing and we are root; otherwise we say what to do.
# EXTRA_APT adds packages (the Makefile passes chromium for the browser test of the dashboard).
set -euo pipefail
declare -A binary_of=([espeak-ng]=espeak-ng [flite]=flite [sox]=sox [sctk]=sctk [libsndfile1]=)
missing=()
for package in espeak-ng flite sox sctk libsndfile1 ${EXTRA_APT:-}; do
  binary=${binary_of[$package]-$package}
  if [[ -n "$binary" ]]; then
    command -v "$binary" >/dev/null 2>&1 || missing+=("$package")
  else
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "warning: missing system packages: ${missing[*]} (install them with: sudo apt-get install ${missing[*]})" >&2
fi
