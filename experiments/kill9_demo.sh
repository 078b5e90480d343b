#!/bin/bash
# kill -9 in the middle of a trial, then the same command (a real run): experiments/results/recovery-kill9.md
set -u
export AUTOCOMPRESS_HOME=${AUTOCOMPRESS_HOME:-$(mktemp -d)}

cd "$(dirname "$0")/.."
CMD="autocompress search --example digits --device cpu --trials 6 --study kill9-demo --no-sensitivity"
echo "\$ $CMD &   # then kill -9 while a trial runs"
$CMD > /dev/null 2>&1 &
PID=$!
python - <<'PY'
import time, optuna, os
from autocompress.search.study import open_storage
deadline = time.time() + 400
while time.time() < deadline:
    time.sleep(2)
    try:
        study = optuna.load_study(study_name="kill9-demo", storage=open_storage(None))
    except Exception:
        continue
    done = [t for t in study.trials if t.state.is_finished()]
    running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    if len(done) >= 2 and running:
        time.sleep(3)
        break
PY
kill -9 $PID; wait $PID 2>/dev/null
echo "killed -9 (pid $PID)"
python experiments/kill9_state.py "after kill -9"
echo "\$ $CMD   # the same command again"
$CMD 2>&1 | tail -15
python experiments/kill9_state.py "after the same command"
