#!/bin/bash
# Issue 11's protocol on a development set, timed: prepare, train from scratch and by transfer
# (10 minutes each, an empty feature cache), evaluate; test macro PR-AUC over the instrument tags.
#   bash benchmarks/train_protocol.sh hard-fluid /path/to/mtat-checkpoints out-folder
# hard-fluid: a folder written by benchmarks/instrument_set.py (audio/ and labels.csv);
# the checkpoint folder holds mtat_fcn.ckpt, mtat_crnn.ckpt, mtat_musicnn.ckpt (convert-sota).
set -euo pipefail
set_dir=$(realpath "$1"); ckpts=$(realpath "$2"); out=$3
mkdir -p "$out" && cd "$out" && rm -rf shards cache
now() { date +%s.%N; }
score() {
    python - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
aps = [v["ap"] for t, v in d["per_tag"].items() if t not in ("fast", "slow")]
print(f"{sys.argv[1]}: {d['n_tracks']} tracks, test macro PR-AUC over {len(aps)} instrument tags "
      f"{sum(aps) / len(aps):.3f}")
PY
}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
s=$(now)
python -m musictag prepare folder --root "$set_dir" --out shards --labels "$set_dir/labels.csv" \
    --tag_separator '|' > prepare.log 2>&1
p=$(now)
for way in scratch transfer; do
    extra=()
    [ "$way" = transfer ] && extra=(--cache-dir cache --pretrained "$ckpts"/mtat_{fcn,crnn,musicnn}.ckpt)
    t0=$(now)
    python -m musictag train shards -o "$way.ckpt" --max-minutes 10 --quiet "${extra[@]}" > "$way.log" 2>&1
    t1=$(now)
    python -m musictag evaluate "$way.ckpt" shards --split test --json "$way.json" > "$way-eval.log"
    t2=$(now)
    score "$way.json"
    tail -4 "$way.log" | head -2
    echo "$way: prepare $(echo "$p - $s" | bc) s, train $(echo "$t1 - $t0" | bc) s," \
         "evaluate $(echo "$t2 - $t1" | bc) s; load $(cut -d' ' -f1-3 /proc/loadavg)"
done
