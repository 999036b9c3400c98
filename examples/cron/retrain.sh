#!/bin/sh
# Nightly retraining: train on the text gathered so far, starting from the production model,
# and replace the production model only when the new one validates better.
#
#   retrain.sh DIR [rnnlm train options...]
#
# DIR holds corpus/all.txt (the text so far, growing), corpus/dev.txt (fixed validation text)
# and gets models/current.pt (what users load), runs/nightly/ (the run) and logs/.
# Options after DIR are added to the train command (the last of a repeated option wins).
# crontab line, 02:30 every night:
#   30 2 * * *  /srv/lm/retrain.sh /srv/lm >> /srv/lm/logs/retrain.log 2>&1
#
# The first night there is no current.pt: the run learns its vocabulary from the corpus and
# its model becomes current.pt. Later nights start from current.pt (its weights and, while the
# text stays close to it, its vocabulary): once 1% or more of the corpus's words are outside
# that vocabulary (--grow-vocab 0.01), the night learns the vocabulary of the corpus as it is
# now, the words both share keep their rows, and promotion compares the two models on the
# same events (the words only one vocabulary holds, with <unk>, as one). With --resume auto beside --init-from, a run cut short (a
# reboot, SIGTERM) on the same text continues where it stopped; once the text has grown, the
# run has finished, or today's options cannot continue it, the night starts from current.pt
# again. One log line says which happened.
#
# Exit: 0 when the night went as it should (promoted, kept the better current model, or
# another run still holds the output); the train command's code otherwise.
set -u
dir=${1:?usage: retrain.sh DIR [rnnlm train options...]}
shift
rnnlm=${RNNLM:-rnnlm}
cd "$dir" || exit 66
mkdir -p models runs/nightly logs

set -- corpus/all.txt --valid corpus/dev.txt --promote-if-better models/current.pt \
    --resume auto --grow-vocab 0.01 --max-time 3600 --out runs/nightly/model.pt "$@"
if [ -e models/current.pt ]; then
    set -- "$@" --init-from models/current.pt
fi

now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
echo "$(now) retraining on corpus/all.txt"
$rnnlm train "$@"
status=$?
case $status in
    0) echo "$(now) done: models/current.pt is the new model" ;;
    3) echo "$(now) done: kept models/current.pt (the new model is not better)"; status=0 ;;
    75) echo "$(now) skipped: the previous night's run still holds runs/nightly"; status=0 ;;
    *) echo "$(now) failed with exit $status (see above)" ;;
esac
exit $status
