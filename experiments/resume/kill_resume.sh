#!/usr/bin/env bash
# kill -9 at seeded random moments, resume by running the same command again, until it
# finishes; then compare with the same job run without interruption. Covers `nas train`
# (KWT-tiny quick start, a checkpoint every 7 steps), `nas quantize --mode qat` (6 epochs),
# `nas prune`, `nas search` (configs/fashion_mnist.ron with a checkpoint inside each training
# run every 20 steps; needs `apt-get install dataset-fashion-mnist`) and a KWT search
# (configs/kwt_search.ron cut to 3 candidates of 3 epochs and a 4-epoch compression, a
# checkpoint every 10 steps). Prints a table; exits non-zero if any interrupted job ends
# differently.
#   NAS    the release binary (default target/release/nas)
#   W      work folder (default /tmp/kill_resume; emptied)
#   KILLS  interruptions per job (default 3)
set -euo pipefail
NAS=${NAS:-target/release/nas}
W=${W:-/tmp/kill_resume}
KILLS=${KILLS:-3}
RANDOM=20261206
rm -rf "$W" && mkdir -p "$W"

# the quick start with a mid-epoch checkpoint every 7 steps
sed 's|batch_shards: 2,|batch_shards: 2,\n        checkpoint_every_steps: 7,|' configs/quickstart.ron > "$W/train.ron"
grep -q "checkpoint_every_steps: 7" "$W/train.ron"

# Runs "$@" to the end, killing it -9 up to $KILLS times after seeded random waits of
# $from_ms to $to_ms milliseconds and running it again. Prints, for each kill that hit a
# running job, the checkpoint the run folder's state named right after it (its step; for a
# search, the training run and its step; for the KWT search, the candidates recorded; "-" if
# none was written yet).
interrupted() {
    local marker=$1 state=$2 from_ms=$3 to_ms=$4; shift 4
    local steps=()
    for _ in $(seq "$KILLS"); do
        "$@" > /dev/null 2>&1 &
        local pid=$!
        local wait_ms=$((from_ms + RANDOM % (to_ms - from_ms)))
        sleep "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
        if kill -9 "$pid" 2> /dev/null; then
            wait "$pid" 2> /dev/null || true
            if [ -f "$state" ]; then
                steps+=("$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["global_step"] if "global_step" in s else "%s: %s" % (s["job"], s["step"]) if "job" in s else "%d candidates done" % len(s["candidates"]))' "$state")")
            else
                steps+=("-")
            fi
        fi
        wait "$pid" 2> /dev/null || true
        [ -e "$marker" ] && break
    done
    "$@" > /dev/null 2>&1
    local IFS=";"
    echo "${steps[*]:-none}"
}

timed() {
    local s=$EPOCHREALTIME
    "$@" > /dev/null 2>&1
    awk "BEGIN { print $EPOCHREALTIME - $s }"
}

t_train=$(timed "$NAS" train --config "$W/train.ron" --out "$W/train-whole" --quiet)
k_train=$(interrupted "$W/train-parts/summary.json" "$W/train-parts/state.json" 2000 15000 "$NAS" train --config "$W/train.ron" --out "$W/train-parts" --quiet)

C="$W/train-whole/best.bpk"
Q=(quantize --checkpoint "$C" --config "$W/train.ron" --mode qat --epochs 6 --quiet --no-eval)
t_qat=$(timed "$NAS" "${Q[@]}" --out "$W/qat-whole.int8")
k_qat=$(interrupted "$W/qat-parts.int8" "$W/qat-parts.int8.qat-run/state.json" 7000 18000 "$NAS" "${Q[@]}" --out "$W/qat-parts.int8")

P=(prune --checkpoint "$C" --config configs/prune/kwt_tiny_agp.ron --data data/synthetic-keywords --sweep 0.5 --quiet)
t_prune=$(timed "$NAS" "${P[@]}" --out "$W/prune-whole")
k_prune=$(interrupted "$W/prune-parts/sweep.json" "$W/prune-parts/sparsity-50/state.json" 3000 10000 "$NAS" "${P[@]}" --out "$W/prune-parts")

sed 's|^)$|    checkpoint_every_steps: 20,\n)|' configs/fashion_mnist.ron > "$W/search.ron"
grep -q "checkpoint_every_steps: 20" "$W/search.ron"
S=(search --config "$W/search.ron" --quiet)
t_search=$(timed "$NAS" "${S[@]}" --out "$W/search-whole")
k_search=$(interrupted "$W/search-parts/summary.json" "$W/search-parts/progress/progress.json" 5000 30000 "$NAS" "${S[@]}" --out "$W/search-parts")

sed -e 's/iterations: 10,/iterations: 3,/' -e 's/population: 5,/population: 2,/' \
    -e 's/epochs: 30,/epochs: 3,/' -e 's/epochs: 80,/epochs: 4,/' \
    -e 's/augment: true,/augment: true,\n            checkpoint_every_steps: 10,/' \
    configs/kwt_search.ron > "$W/kwt_search.ron"
[ "$(grep -c "checkpoint_every_steps: 10" "$W/kwt_search.ron")" = 2 ]
K=(search --config "$W/kwt_search.ron" --quiet)
t_kwt=$(timed "$NAS" "${K[@]}" --out "$W/kwt-whole")
k_kwt=$(interrupted "$W/kwt-parts/summary.json" "$W/kwt-parts/state.json" 2000 10000 "$NAS" "${K[@]}" --out "$W/kwt-parts")

python3 - "$W" "$t_train" "$k_train" "$t_qat" "$k_qat" "$t_prune" "$k_prune" "$t_search" "$k_search" "$t_kwt" "$k_kwt" <<'PY'
import json, sys
(w, t_train, k_train, t_qat, k_qat, t_prune, k_prune, t_search, k_search, t_kwt,
 k_kwt) = sys.argv[1:]
def js(p): return json.load(open(f"{w}/{p}"))
rows, bad = [], 0
a, b = js("train-whole/summary.json"), js("train-parts/summary.json")
same = (a["test_confusion"] == b["test_confusion"] and a["steps"] == b["steps"] and
        all(abs(x["train_loss"] - y["train_loss"]) < 1e-5 and x["valid_acc"] == y["valid_acc"]
            for x, y in zip(a["history"], b["history"])))
rows.append(("nas train (quick start)", t_train, k_train,
             f"test {100*a['test_acc']:.2f} % / {100*b['test_acc']:.2f} %", same))
qa, qb = open(f"{w}/qat-whole.int8", "rb").read(), open(f"{w}/qat-parts.int8", "rb").read()
ja, jb = js("qat-whole.int8.qat.json"), js("qat-parts.int8.qat.json")
rows.append(("nas quantize --mode qat", t_qat, k_qat,
             f"fake-quant test {100*ja['fake_quant_test_acc']:.2f} % / {100*jb['fake_quant_test_acc']:.2f} %",
             qa == qb and ja == jb))
pa, pb = js("prune-whole/sparsity-50/report.json"), js("prune-parts/sparsity-50/report.json")
rows.append(("nas prune (sweep 0.5)", t_prune, k_prune,
             f"test {100*pa['test_acc']:.2f} % / {100*pb['test_acc']:.2f} %",
             pa["test_acc"] == pb["test_acc"] and pa["report"] == pb["report"] and pa["steps"] == pb["steps"]))
sa, sb = js("search-whole/state.json"), js("search-parts/state.json")
keys = ("supernets", "candidates", "final_model")
fa = sa["final_model"]
rows.append(("nas search (fashion_mnist.ron)", t_search, k_search,
             f"int8 test {100*fa['int8']['test_accuracy']:.2f} % / {100*sb['final_model']['int8']['test_accuracy']:.2f} %",
             all(sa[k] == sb[k] for k in keys)))
ka, kb = js("kwt-whole/state.json"), js("kwt-parts/state.json")
rows.append(("nas search (KWT space, cut down)", t_kwt, k_kwt,
             f"int8 test {100*ka['final_model']['int8']['test_accuracy']:.2f} % / {100*kb['final_model']['int8']['test_accuracy']:.2f} %",
             # wall-clock seconds are not part of the result
             all({x: y for x, y in ca.items() if x != "train_seconds"}
                 == {x: y for x, y in cb.items() if x != "train_seconds"}
                 for ca, cb in zip(ka["candidates"], kb["candidates"]))
             and len(ka["candidates"]) == len(kb["candidates"])
             and ka["final_model"] == kb["final_model"]))
print("| job | uninterrupted wall | resumed from steps (one per kill -9) | result, uninterrupted / interrupted | same |")
print("| --- | --- | --- | --- | --- |")
for name, t, k, res, ok in rows:
    bad += not ok
    print(f"| {name} | {float(t):.1f} s | {k} | {res} | {'yes' if ok else 'NO'} |")
sys.exit(1 if bad else 0)
PY
