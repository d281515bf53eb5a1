#!/usr/bin/env bash
# Feature tables for bench/grade_signal.py: the three cohorts in chunks of 62 patients, interleaved so that whatever
# has finished when time runs out covers all three cohorts (cohort 1 first). Each chunk is one parquet
# (<cache>/<cohort>_<config>_<start>.parquet); bench/grade_signal.py concatenates the chunks of a cohort.
#   nice -n 10 bench/signal_extract.sh /work/bench_cache/h12-signal [configs/paper.yaml] [extra args]
set -euo pipefail
CACHE=${1:?cache folder}; CONFIG=${2:-configs/paper.yaml}; shift $(( $# < 2 ? $# : 2 )) || true
TAG=$(basename "$CONFIG" .yaml)
PY=${PY:-.venv/bin/python}
ORDER="c1_seed1:0 c1_seed1:62 c3_seed3_mix:0 c2_seed2:0 c1_seed1:124 c1_seed1:186 c3_seed3_mix:62 c2_seed2:62
c1_seed1:248 c1_seed1:310 c3_seed3_mix:124 c2_seed2:124 c1_seed1:372 c1_seed1:434 c3_seed3_mix:186 c2_seed2:186"
for item in $ORDER; do
  cohort=${item%%:*}; start=${item##*:}; stop=$((start + 62))
  out="$CACHE/features/${cohort}_${TAG}_$(printf %03d "$start").parquet"
  [[ -f "$out" ]] && continue
  while [[ ! -f "$CACHE/$cohort/manifest.csv" ]]; do sleep 20; done
  [[ $(($(wc -l < "$CACHE/$cohort/manifest.csv") - 1)) -ge $stop ]] || { echo "skip $item (cohort smaller)"; continue; }
  echo "$(date -u +%T) $cohort $start:$stop"
  "$PY" bench/signal_features.py "$CACHE/$cohort" --config "$CONFIG" --out "$out" --patients "$start:$stop" "$@"
done
