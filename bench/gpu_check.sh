#!/usr/bin/env bash
# GPU proof of the 0.1 toolkit: train, eval and generate on WikiText-2 with --device cuda,
# the CUDA tests, and the training-throughput benchmark beside a plain loop.
# Run on a GPU machine from the project root, with the corpora under .data/
# (bash ../shared/tools/device-prep.sh copies them there). Writes logs to ${OUT:-bench-out}.
set -uo pipefail
out=${OUT:-bench-out}
mkdir -p "$out"
W=.data/wikitext-2
pip install --no-deps -q -e . >/dev/null 2>&1 || pip install --no-deps -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"

echo "== CUDA tests"
python3 -m pytest -q tests/test_cuda.py 2>&1 | tail -3

echo "== train (WikiText-2, 2x650 tied LSTM, 120 s budget)"
/usr/bin/time -f "train wall %e s, max RSS %M KB" rnnlm train $W/train.txt --valid $W/valid.txt --device cuda \
    --emb 650 --hidden 650 --layers 2 --tied --dropout 0.5 --optimizer adam --lr 0.002 --clip 0.25 \
    --batch-size 64 --bptt 70 --epochs 40 --max-time 120 --log-interval 200 --out "$out/wt2/model.pt" --json \
    2> "$out/train.log" | tee "$out/train.json"
tail -n 3 "$out/train.log"

echo "== eval (test split, stream and sentence context)"
/usr/bin/time -f "eval wall %e s" rnnlm eval "$out/wt2/model.pt" $W/test.txt --device cuda
/usr/bin/time -f "eval wall %e s" rnnlm eval "$out/wt2/model.pt" $W/test.txt --device cuda --context sentence

echo "== scoring speed beside a plain loop (test split; x20 for a large corpus)"
python3 bench/scoring_speed.py --model "$out/wt2/model.pt" --text $W/test.txt --device cuda
python3 bench/scoring_speed.py --model "$out/wt2/model.pt" --text $W/test.txt --device cuda --copies 20 --contexts sentence

echo "== scoring: plain, neural cache, dynamic evaluation (test split)"
python3 bench/scoring.py --model "$out/wt2/model.pt" --data $W --device cuda

echo "== generate (2000 tokens, one stream; 64 streams)"
/usr/bin/time -f "generate wall %e s" rnnlm generate "$out/wt2/model.pt" --device cuda --max-tokens 2000 --seed 1 > "$out/sample.txt"
wc -w "$out/sample.txt"
/usr/bin/time -f "generate x64 wall %e s" rnnlm generate "$out/wt2/model.pt" --device cuda --max-tokens 500 --num-samples 64 --seed 1 > /dev/null

echo "== throughput beside a plain loop"
python3 bench/train_throughput.py --data $W/train.txt --device cuda --emb 650 --hidden 650 --tied \
    --batch-size 64 --bptt 70 --steps 300

echo "== quality within 120 s (wt2-gpu preset)"
python3 bench/quality.py --data $W --budget 120 --preset wt2-gpu

echo "== torchrun on the one GPU (a smoke run of the distributed path with NCCL)"
torchrun --nproc-per-node 1 -m rnnlm_cli train $W/valid.txt --device cuda --max-steps 50 --out "$out/ddp/model.pt" 2>&1 | tail -2
