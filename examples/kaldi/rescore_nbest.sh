#!/bin/sh
# Rescore a Kaldi n-best list with an rnnlm model and pick each utterance's new best.
#
#   rescore_nbest.sh MODEL DIR [LM_WEIGHT [ACWT]]
#
# DIR holds what Kaldi writes for an n-best list (keys are UTT-N, N the rank from 1):
#   words.txt  the symbol table, data/lang/words.txt ('word id' per line)
#   words.ids  each hypothesis as word ids: nbest-to-linear's transcriptions
#   ac.cost    'UTT-N cost', acoustic costs (unscaled): nbest-to-linear's ac-cost
#   lm.cost    'UTT-N cost', the decoding graph's LM costs: nbest-to-linear's lm-cost
# made from a decoding directory's lattices by
#   lattice-to-nbest --acoustic-scale=0.1 --n=10 "ark:gunzip -c lat.1.gz |" ark:nbest.lats
#   nbest-to-linear ark:nbest.lats ark:/dev/null ark,t:words.ids ark,t:lm.cost ark,t:ac.cost
#
# It writes to DIR:
#   rnnlm.tokens  'UTT-N c1 ... cN cEOS': the model's cost (-ln P) of each word and the sentence end
#   rnnlm.cost    'UTT-N cost': their sum, the model's cost of the hypothesis
#   total.cost    'UTT-N cost': ACWT * ac + (1 - LM_WEIGHT) * lm + LM_WEIGHT * rnnlm (all -ln)
#   best.text     'UTT w1 ... wN': the lowest total per utterance (ties: lowest rank), in words
# (Kaldi's linear-to-nbest | nbest-to-lattice | lattice-best-path would take total.cost back
# into lattices; best.text is what they would give.)
#
# CARRY=best carries the model's state from each utterance's best hypothesis (by the decoder's
# rank) to the next utterance, for lists of one conversation in order; CARRY=none (the default)
# scores every hypothesis alone. RNNLM names the command (default: rnnlm).
# Exit: 0, or the first failing command's code. The four outputs are written beside DIR's
# files under temporary names and renamed into place only when all are complete: a failure
# leaves the previous outputs as they were, and no empty or partial file.
set -eu
model=${1:?usage: rescore_nbest.sh MODEL DIR [LM_WEIGHT [ACWT]]}
dir=${2:?usage: rescore_nbest.sh MODEL DIR [LM_WEIGHT [ACWT]]}
weight=${3:-0.5}
acwt=${4:-0.1}
rnnlm=${RNNLM:-rnnlm}
tmp="$dir/.rescore_nbest.$$"
trap 'rm -f "$tmp".tokens "$tmp".cost "$tmp".total "$tmp".best' EXIT

# Ids become words through the symbol table (as utils/int2sym.pl -f 2- would map them);
# <eps>, <s>, </s> and #N are not words and are dropped; a word the model lacks is <unk>.
$rnnlm eval "$model" --nbest "$dir/words.ids" --nbest-format kaldi --symbols "$dir/words.txt" \
    --output token-scores --carry-state "${CARRY:-none}" > "$tmp.tokens"

awk '{ s = 0; for (i = 2; i <= NF; i++) s += $i; printf "%s %.4f\n", $1, s }' \
    "$tmp.tokens" > "$tmp.cost"

# Every key must be in all three tables: a missing one means the lists and costs do not match.
awk -v w="$weight" -v acwt="$acwt" '
    FILENAME == ARGV[1] { ac[$1] = $2; next }
    FILENAME == ARGV[2] { lm[$1] = $2; next }
    {
        if (!($1 in ac) || !($1 in lm)) { print "no cost for " $1 > "/dev/stderr"; exit 65 }
        printf "%s %.4f\n", $1, acwt * ac[$1] + (1 - w) * lm[$1] + w * $2
    }' "$dir/ac.cost" "$dir/lm.cost" "$tmp.cost" > "$tmp.total"

# The best key per utterance (UTT is the key without its last '-N'), then its words.
awk '
    FILENAME == ARGV[1] { id2word[$2] = $1; next }
    FILENAME == ARGV[2] {
        utt = $1; sub(/-[0-9]+$/, "", utt)
        if (!(utt in best)) order[++n] = utt
        if (!(utt in best) || $2 < cost[utt]) { best[utt] = $1; cost[utt] = $2 }
        next
    }
    { words[$1] = ""; for (i = 2; i <= NF; i++) { w = id2word[$i]
        if (w != "<eps>" && w != "<s>" && w != "</s>" && w !~ /^#[0-9]+$/) words[$1] = words[$1] " " w } }
    END { for (i = 1; i <= n; i++) print order[i] words[best[order[i]]] }
' "$dir/words.txt" "$tmp.total" "$dir/words.ids" > "$tmp.best"

mv -f "$tmp.tokens" "$dir/rnnlm.tokens"
mv -f "$tmp.cost" "$dir/rnnlm.cost"
mv -f "$tmp.total" "$dir/total.cost"
mv -f "$tmp.best" "$dir/best.text"
