#!/bin/bash
# Scores float checkpoints and integer graphs on every split (train, valid, test) of a Speech
# Commands folder the model never saw, e.g. a second synthesized set
# (`nas data synth-speech --out D --per-word 150 --seed 2`): about ten times the clips of one
# test split, so differences of a fraction of a point become measurable.
#
# usage: score_all_splits.sh DATA (--checkpoint FILE | --int8 FILE)...
# env:   NAS (default: nas on PATH), TASK (default labels12), PRED_DIR (when set: every
#        clip's prediction into PRED_DIR/<model path, / as _>.<split>.csv, for paired_test.py)
set -euo pipefail
NAS=${NAS:-nas}
TASK=${TASK:-labels12}
[ $# -ge 3 ] || { sed -n 2,10p "$0"; exit 2; }
data=$1; shift
echo "| model | correct / clips | accuracy |"
echo "| --- | --- | --- |"
while [ $# -ge 2 ]; do
  kind=$1 file=$2; shift 2
  correct=0 total=0
  for split in train valid test; do
    pred=()
    [ -z "${PRED_DIR:-}" ] || pred=(--predictions "$PRED_DIR/${file//\//_}.$split.csv")
    line=$("$NAS" eval "$kind" "$file" --data "$data" --task "$TASK" --split "$split" "${pred[@]}" 2>/dev/null \
      | grep -oE '\([0-9]+ / [0-9]+\)' | tr -d '()')
    [ -n "$line" ] || { echo "no accuracy from nas eval $kind $file --split $split" >&2; exit 1; }
    correct=$((correct + ${line%% /*})); total=$((total + ${line##*/ }))
  done
  printf '| %s | %d / %d | %s %% |\n' "$file" "$correct" "$total" \
    "$(awk -v c="$correct" -v t="$total" 'BEGIN { printf "%.2f", 100 * c / t }')"
done
