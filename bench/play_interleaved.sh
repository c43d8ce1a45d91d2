#!/bin/bash
# Play speed of this tree against another checkout, interleaved: REPS rounds, each timing the
# other tree at its default MaskGIT steps, then this tree eager and compiled at each of STEPS.
#
#   git worktree add /tmp/old a90c098
#   bash bench/play_interleaved.sh /tmp/old out/speed "8 6 4"
#
# Prints, per configuration, the min and median over rounds of each run's p50 step time and the
# speed-up against the other tree. One torch thread throughout.
set -euo pipefail
OLD=$(cd "$1" && pwd); OUT=${2:-out/speed}; STEPS=${3:-"8 6"}; REPS=${REPS:-5}
NEW=$(cd "$(dirname "$0")/.." && pwd); PY=${PY:-python}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
B="--presets small --cache yes --threads 1 --frames 30 --warmup 3"
for rep in $(seq "$REPS"); do
  (cd "$OLD" && PYTHONPATH="$OLD" OMP_NUM_THREADS=1 $PY bench/play.py $B --json "$OUT/old-$rep.json" > /dev/null 2>&1)
  for m in $STEPS; do
    (cd "$NEW" && PYTHONPATH="$NEW" OMP_NUM_THREADS=1 $PY bench/play.py $B --maskgit-steps "$m" \
        --json "$OUT/eager$m-$rep.json" > /dev/null 2>&1)
    (cd "$NEW" && PYTHONPATH="$NEW" OMP_NUM_THREADS=1 $PY bench/play.py $B --maskgit-steps "$m" --compile \
        --json "$OUT/compiled$m-$rep.json" > /dev/null 2>&1)
  done
done
OUT="$OUT" STEPS="$STEPS" $PY - <<'PY'
import glob, json, os
import numpy as np
out, names = os.environ["OUT"], ["old"]
for m in os.environ["STEPS"].split():
    names += [f"eager{m}", f"compiled{m}"]
base = None
for name in names:
    p50 = np.array([json.load(open(f))[0]["p50_ms"] for f in sorted(glob.glob(f"{out}/{name}-*.json"))])
    base = base or (p50.min(), np.median(p50))
    print(f"{name:11s} p50 ms min {p50.min():6.1f} median {np.median(p50):6.1f}  frames/s {1000 / np.median(p50):5.1f}"
          f"  speed-up {base[0] / p50.min():.2f}x (min) {base[1] / np.median(p50):.2f}x (median)  rounds {len(p50)}")
PY
