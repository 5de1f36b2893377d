#!/usr/bin/env bash
# A whole shipped search, killed -9 at seeded random moments and resumed, against the same
# search run without interruption (kill_resume.sh does this for cut-down searches that take
# seconds; this one takes the config as shipped, e.g. the 20-minute configs/kwt_search.ron).
# The kills are spread over the uninterrupted run's wall time. Prints where each kill left the
# run, then compares every record of the two `state.json` files except the candidates'
# wall-clock `train_seconds`; exits non-zero if they differ.
#   usage: kill_search.sh CONFIG
#   NAS    the release binary (default target/release/nas)
#   W      work folder (default /tmp/kill_search; emptied)
#   KILLS  interruptions (default 3)
set -euo pipefail
CONFIG=${1:?usage: kill_search.sh CONFIG}
NAS=${NAS:-target/release/nas}
W=${W:-/tmp/kill_search}
KILLS=${KILLS:-3}
RANDOM=20261206
rm -rf "$W" && mkdir -p "$W"

start=$EPOCHREALTIME
"$NAS" search --config "$CONFIG" --out "$W/whole" --quiet > "$W/whole.log" 2>&1
whole_s=$(awk "BEGIN { printf \"%d\", $EPOCHREALTIME - $start }")
echo "uninterrupted: ${whole_s} s"

# Where a kill left the run: the mid-run checkpoint (job and step) and the finished records.
where() {
    python3 - "$W/parts" <<'PY'
import json, os, sys
w = sys.argv[1]
def js(p):
    p = os.path.join(w, p)
    return json.load(open(p)) if os.path.exists(p) else None
state, progress = js("state.json"), js("progress/progress.json")
done = f"{len(state['candidates'])} candidates done" if state else "no state yet"
inside = f", checkpoint {progress['job']} step {progress['step']}" if progress else ""
print(done + inside)
PY
}

start=$EPOCHREALTIME
for k in $(seq "$KILLS"); do
    "$NAS" search --config "$CONFIG" --out "$W/parts" --quiet >> "$W/parts.log" 2>&1 &
    pid=$!
    # each attempt runs a seeded 20-90 % of the whole run's time before its kill
    wait_s=$((whole_s * (20 + RANDOM % 70) / 100 / KILLS + 1))
    sleep "$wait_s"
    if kill -9 "$pid" 2> /dev/null; then
        wait "$pid" 2> /dev/null || true
        echo "kill $k after ${wait_s} s: $(where)"
    else
        wait "$pid" || true
        echo "kill $k after ${wait_s} s: the run had finished"
        break
    fi
done
"$NAS" search --config "$CONFIG" --out "$W/parts" --quiet >> "$W/parts.log" 2>&1
parts_s=$(awk "BEGIN { printf \"%d\", $EPOCHREALTIME - $start }")
echo "interrupted and resumed: ${parts_s} s in all"
# the training runs that resumed mid-way, as their logs say (ANSI colours stripped)
sed 's/\x1b\[[0-9;]*m//g' "$W/parts.log" | grep -o "resuming .*" | sed 's/^/  /' || true

python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
a = json.load(open(f"{w}/whole/state.json"))
b = json.load(open(f"{w}/parts/state.json"))
def result(state):
    # wall-clock seconds are not part of the result
    drop = lambda rec: {k: v for k, v in rec.items() if k != "train_seconds"}
    out = {k: v for k, v in state.items() if k not in ("candidates", "started_at", "resumed_at")}
    out["candidates"] = [drop(c) for c in state.get("candidates", [])]
    return out
ra, rb = result(a), result(b)
diff = sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))
fa, fb = a["final_model"], b["final_model"]
print(f"candidates: {len(a['candidates'])} / {len(b['candidates'])}; "
      f"int8 test accuracy {100*fa['int8']['test_accuracy']:.2f} % / {100*fb['int8']['test_accuracy']:.2f} %")
print("same final answer and records: " + ("yes" if not diff else "NO, differ in " + ", ".join(diff)))
sys.exit(1 if diff else 0)
PY
