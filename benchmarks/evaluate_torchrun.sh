#!/bin/bash
# torchrun scaling of `cleargrad evaluate`: the same protocol with 1 and 2 processes (twice each,
# alternating), wall time per run, then the two stores compared row by row.
#   bash benchmarks/evaluate_torchrun.sh [OUTDIR]          (LIMIT=256 for more images; default 64)
set -u
OUT=${1:-/tmp/cleargrad-torchrun}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
ARGS="evaluate -m small-cnn-fashion-mnist -d fashion-mnist --limit ${LIMIT:-64} --batch-size 8 \
 --methods saliency,integrated_gradients,gradcam \
 --metrics insertion,deletion,average_drop,average_gain,average_increase,infidelity,sparseness --device cpu -q"
for k in 1 2 1 2; do
  rm -f "$OUT/tr$k.sqlite"
  t0=$(date +%s.%N)
  torchrun --nproc_per_node $k --master_port $((29600 + k)) -m cleargrad $ARGS --store "$OUT/tr$k.sqlite" \
    > "$OUT/tr$k.out" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  echo "nproc=$k rc=$rc seconds=$(echo "$t1 - $t0" | bc)"
done
python - "$OUT" <<'PY'
import sqlite3, sys
def rows(p):
    c = sqlite3.connect(p)
    return {(a, b, m): v for a, b, m, v in c.execute("select image_id, method, metric, value from results")}
a, b = rows(f"{sys.argv[1]}/tr1.sqlite"), rows(f"{sys.argv[1]}/tr2.sqlite")
diff = max((abs((a[k] or 0) - (b.get(k) or 0)) for k in a), default=None)
print("rows", len(a), len(b), "identical:", a == b, "max abs diff:", diff)
PY
