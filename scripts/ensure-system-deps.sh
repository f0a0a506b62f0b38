#!/usr/bin/env bash
# Install the Debian packages the tests and `make run` drive for real, only when a binary is missing.
# prometheus -> prometheus, promtool; prometheus-alertmanager -> prometheus-alertmanager, amtool.
set -euo pipefail
need=()
for pair in prometheus:prometheus promtool:prometheus prometheus-alertmanager:prometheus-alertmanager \
            amtool:prometheus-alertmanager prometheus-node-exporter:prometheus-node-exporter \
            prometheus-pushgateway:prometheus-pushgateway; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
mapfile -t uniq < <(printf '%s\n' "${need[@]}" | sort -u)
echo "installing Debian packages: ${uniq[*]}" >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the packages' own services (on the default ports) from starting; we start ours on loopback.
if [ -d /usr/sbin ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${uniq[@]}"
