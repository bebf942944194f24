#!/usr/bin/env bash
# Install the Debian packages sealgate's tests and demo need, only if missing:
# swtpm and tpm2-tools (TPM fixtures), postgresql (a throwaway cluster per test run,
# sealgate.testing.postgres), softhsm2 (a throwaway PKCS#11 token, sealgate.testing.softhsm)
# and systemd (systemd-analyze checks the shipped unit file).
set -euo pipefail
pkgs=(swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0 postgresql softhsm2 systemd)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
