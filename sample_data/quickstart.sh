#!/bin/sh
# The main job on the shipped sample corpus: train, then score the test split and sample.
set -eu
cd "$(dirname "$0")/.."
rnnlm train sample_data/train.txt --valid sample_data/valid.txt \
    --preset sample-cpu --plot --out runs/sample/model.pt
rnnlm eval runs/sample/model.pt sample_data/test.txt
rnnlm generate runs/sample/model.pt --prompt "the dogs" --max-tokens 40 --stop-at-eos --seed 1
