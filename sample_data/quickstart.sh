#!/bin/sh
# The main job on the shipped sample corpus: train, then score the test split, judge the
# minimal pairs (long-distance agreement, brackets) and sample.
set -eu
cd "$(dirname "$0")/.."
rnnlm train sample_data/train.txt --valid sample_data/valid.txt \
    --preset sample-cpu --plot --out runs/sample/model.pt
rnnlm eval runs/sample/model.pt sample_data/test.txt
rnnlm eval runs/sample/model.pt --pairs sample_data/pairs.tsv
rnnlm generate runs/sample/model.pt --prompt "the dogs" --max-tokens 40 --stop-at-eos --seed 1
