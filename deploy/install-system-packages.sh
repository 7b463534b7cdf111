#!/usr/bin/env bash
# Debian packages the local stack and the tests need: influxd (InfluxDB 1.6.7, the only server
# obtainable here), a JDK and Maven (the local Apache Kafka broker runs from jars Maven resolves),
# docker-compose 1.29 (validates docker-compose.yml offline, no daemon needed) and chromium, the browser
# Playwright drives in the web page tests (Playwright's own browser download cannot work here), and
# PostgreSQL, the store's production database (the store's tests run on it as well as on SQLite).
# Idempotent: installs only what is missing. The Debian influxdb and postgresql services are stopped at once:
# `aromatrack stack up` runs its own loopback-only influxd and its own PostgreSQL cluster under the state dir.
set -euo pipefail
missing=()
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # the SMTP STARTTLS test's certificate
command -v ip >/dev/null 2>&1 || missing+=(iproute2)  # the multi-host test's network namespaces
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  (service influxdb stop >/dev/null 2>&1 || true)
  (service postgresql stop >/dev/null 2>&1 || true)
fi
