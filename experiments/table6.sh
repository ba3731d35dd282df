#!/usr/bin/env bash
# Table VI: post-processing (Sec. III-E) over the best networks. Paper CCC x 100 on OMG validation (V / A):
#   table6/vgg16_1rnn_post             43.1  / 31.1    over table3/cnn_1rnn
#   table6/vgg16_3rnn_last_conv_post   49.1  / 26.1    over table3/cnn_3rnn_last_conv
#   table6/resnet_rnn_post             46.2  / 28.1    over table4/cnn_rnn
#   table6/fusion_post                 48.45 / 28.86   over table5/vgg_fc_rnn_resnet_rnn (best of its two ways)
# Post-processing: median filter of per-frame predictions (windows 81 valence / 3 arousal) and smoothing of
# utterance predictions within a video; each step kept only if it raises validation CCC; the chosen
# settings are saved in <workdir>/postprocess.json and applied unchanged to any other split.
# Needs the base rows trained (runs them if missing). Expected GPU time: minutes (evaluation only) if the
# base rows exist.
# Usage: OMG_DATA=... OMG_LABELS=... experiments/table6.sh [rows...];  SMOKE=1 for the CPU smoke run.
source "$(dirname "$0")/common.sh"
ROWS=("$@")
[[ ${#ROWS[@]} -eq 0 ]] && ROWS=(table6/vgg16_1rnn_post table6/vgg16_3rnn_last_conv_post table6/resnet_rnn_post
                                 table6/fusion_post)
for row in "${ROWS[@]}"; do
  base="$("$PYTHON" -c "from omg_cnnrnn import experiments; print(experiments.get('$row').base_experiment)")"
  workdir="$CKPT_ROOT/$base"
  if [[ "$base" == table5/* ]]; then
    [[ -f "$workdir/from_omg/best.json" ]] || SMOKE="${SMOKE:-0}" bash "$(dirname "$0")/table5.sh" "$base"
    workdir="$workdir/from_omg"
  fi
  [[ -f "$workdir/best.json" ]] || run_row "$base"
  evaluate "$workdir" --tune_postprocess --output_dir="$CKPT_ROOT/$row/eval_validation"
done
"$PYTHON" experiments/summary.py --root="$CKPT_ROOT" --table=VI
