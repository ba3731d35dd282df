#!/usr/bin/env bash
# Table VI: post-processing (Sec. III-E) over the best networks. Paper CCC x 100 on OMG validation (V / A):
#   table6/vgg16_1rnn_post             43.1  / 31.1    over table3/cnn_1rnn
#   table6/vgg16_3rnn_last_conv_post   49.1  / 26.1    over table3/cnn_3rnn_last_conv
#   table6/resnet_rnn_post             46.2  / 28.1    over table4/cnn_rnn
#   table6/fusion_post                 48.45 / 28.86   over table5/vgg_fc_rnn_resnet_rnn (the better of its two
#                                                      training ways on validation; the choice is printed and
#                                                      saved in <root>/table6/fusion_post/base_run.json)
# Released-code variants (the authors' train_script.py / AffWildNet.py settings; same paper row and CCC):
#   table6/vgg16_1rnn_released_post            over table3/cnn_1rnn_released  (GRUs on [fc1, pool5])
#   table6/vgg16_3rnn_last_conv_released_post  over table3/cnn_3rnn_last_conv_released  (256 GRU units, no GRU dropout)
# Post-processing, the paper's procedure as each row's registered config sets it (evaluate
# --postprocess_experiment=<row>): median filter of per-frame predictions (windows 81 valence / 3 arousal),
# then smoothing of utterance predictions within a video; each step kept only if it raises validation CCC;
# the choice is saved in the base workdir's postprocess.json and applied unchanged to any other split
# (evaluate --postprocess=...). The wider search is not run here: evaluate --tune_postprocess
# --postprocess_procedure=search, and its figures say so.
# Needs the base rows trained (runs them if missing). Expected GPU time: minutes (evaluation only) if the
# base rows exist.
# Usage: OMG_DATA=... OMG_LABELS=... experiments/table6.sh [rows...];  SMOKE=1 for the CPU smoke run.
source "$(dirname "$0")/common.sh"
ROWS=("$@")
[[ ${#ROWS[@]} -eq 0 ]] && ROWS=(table6/vgg16_1rnn_post table6/vgg16_3rnn_last_conv_post table6/resnet_rnn_post
                                 table6/fusion_post table6/vgg16_1rnn_released_post
                                 table6/vgg16_3rnn_last_conv_released_post)
for row in "${ROWS[@]}"; do
  base="$(field "$row" base_experiment)"
  [[ "$row" == *_released_post ]] && echo "== $row: released-code variant (over $base)" >&2
  has_run "$base" || run_row "$base"
  # The base row's run (the better of its training ways on validation, if it has several).
  workdir="$(run "$PYTHON" experiments/base_run.py --root="$CKPT_ROOT" --row="$row" \
    --output="$CKPT_ROOT/$row/base_run.json")"
  # DRY_RUN=1: nothing was trained, so there is no run to choose: the row's own base stands in for it.
  [[ "${DRY_RUN:-0}" == "1" ]] && workdir="$CKPT_ROOT/$base"
  evaluate "$workdir" --tune_postprocess --postprocess_experiment="$row" --output_dir="$CKPT_ROOT/$row/eval_validation"
done
run "$PYTHON" experiments/summary.py --root="$CKPT_ROOT" --table=VI
