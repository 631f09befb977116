#!/usr/bin/env bash
# Start a 3-node cluster on 127.0.0.1 running examples/custom_objective.toml,
# wait for it to finish, and print the best trials from node A's ledger.
#   bash examples/three_nodes.sh            # fast Branin study (no JAX)
#   STUDY=examples/mnist_mlp.toml bash examples/three_nodes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY=${STUDY:-examples/custom_objective.toml}
DIR=$(mktemp -d /tmp/p2phpo-3nodes.XXXX)
# The venv's p2phpo when the venv is not activated (the README's install makes .venv/).
if [ -z "${P2PHPO:-}" ]; then
  if command -v p2phpo >/dev/null 2>&1; then P2PHPO=p2phpo; else P2PHPO=.venv/bin/p2phpo; fi
fi
# Joiners run only built-in objectives or ones their operator allows.
ALLOW=(--allow-objective examples.custom_objective:objective)
echo "state dirs and logs in $DIR"
$P2PHPO node --study "$STUDY" --bind 127.0.0.1:7946 --state-dir "$DIR/a" --profile local --no-ui > "$DIR/a.jsonl" 2>&1 &
A=$!
sleep 1
$P2PHPO node --seed 127.0.0.1:7946 --bind 127.0.0.1:7947 --state-dir "$DIR/b" --profile local --no-ui "${ALLOW[@]}" > "$DIR/b.jsonl" 2>&1 &
B=$!
$P2PHPO node --seed 127.0.0.1:7946 --bind 127.0.0.1:7948 --state-dir "$DIR/c" --profile local --no-ui "${ALLOW[@]}" > "$DIR/c.jsonl" 2>&1 &
C=$!
trap 'kill $A $B $C 2>/dev/null || true' EXIT
echo "watch it live:  $P2PHPO status --seed 127.0.0.1:7946"
wait $A $B $C || true
$P2PHPO export --state-dir "$DIR/a" --format csv > "$DIR/trials.csv"
# count the trials that used the budget (COMPLETE, PRUNED, FAILED), not retried attempts
echo "best 5 of $(grep -c -E ',(COMPLETE|PRUNED|FAILED),' "$DIR/trials.csv") trials (all in $DIR/trials.csv):"
(head -1 "$DIR/trials.csv"; grep ,COMPLETE, "$DIR/trials.csv" | sort -t, -k5 -g | head -5) || true
