#!/usr/bin/env bash
# One night of search: resume the study for a fixed time, then write the morning report.
# Started by cron or by the systemd timer beside this file. If last night's run is still going, this one joins
# its study as a second worker (same storage, same study): nothing collides, the set-up is done once per study.
#
#   AUTOCOMPRESS_DIR     where the project's virtual environment and runs live (default: this repository)
#   NIGHTLY_TARGET       what to search: "--example digits" or a config file (default: --example digits)
#   NIGHTLY_DEVICE       hardware profile (default: cpu)
#   NIGHTLY_TIMEOUT      time budget, e.g. 8h, 90m, 300 (default: 8h)
#   NIGHTLY_STORAGE      Optuna storage URL; several machines share one PostgreSQL (default: SQLite in the home)
#   NIGHTLY_TRACKING_URI MLflow tracking URI (default: the local store in the home)
#   NIGHTLY_STUDY        study name (default: nightly-<device>); NIGHTLY_FLAGS more `autocompress search` flags
set -euo pipefail
dir="${AUTOCOMPRESS_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
cd "$dir"
[ -f .venv/bin/activate ] && . .venv/bin/activate
target="${NIGHTLY_TARGET:---example digits}"
device="${NIGHTLY_DEVICE:-cpu}"
flags=(--device "$device" --timeout "${NIGHTLY_TIMEOUT:-8h}")
[ -n "${NIGHTLY_STORAGE:-}" ] && flags+=(--storage "$NIGHTLY_STORAGE")
[ -n "${NIGHTLY_TRACKING_URI:-}" ] && flags+=(--tracking-uri "$NIGHTLY_TRACKING_URI")
study="${NIGHTLY_STUDY:-nightly-$device}"
mkdir -p reports
# shellcheck disable=SC2086  # the target is one or two words on purpose
autocompress search $target "${flags[@]}" --study "$study" --out "best/$study" ${NIGHTLY_FLAGS:-}
report_flags=()
[ -n "${NIGHTLY_STORAGE:-}" ] && report_flags+=(--storage "$NIGHTLY_STORAGE")
[ -n "${NIGHTLY_TRACKING_URI:-}" ] && report_flags+=(--tracking-uri "$NIGHTLY_TRACKING_URI")
autocompress report "$study" "${report_flags[@]}" --out "reports/$study-$(date +%F).html"
