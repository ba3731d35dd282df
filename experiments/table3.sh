#!/usr/bin/env bash
# Table III: networks based on VGG-16 (Sec. III-A, III-B1). Paper CCC x 100 on OMG validation (V / A):
#   table3/cnn_only                 38.1  / 25.5    CNN only (single frames, batch 80)
#   table3/cnn_rnn                  44.7  / 26.9    basic CNN-RNN
#   table3/cnn_1rnn                 40.74 / 30.05   CNN-1RNN (text: [conv5_3, pool5, fc1]; released: [fc1, pool5])
#   table3/cnn_2rnn                 42.74 / 28.61   CNN-2RNN
#   table3/cnn_2rnn_fc              42.11 / 28.33   CNN-2RNN-FC
#   table3/cnn_3rnn_2nd_last_conv   45.34 / 21.5    CNN-3RNN-2nd-last-conv
#   table3/cnn_3rnn_last_conv       45.6  / 24.6    CNN-3RNN-last-conv
#   table3/cnn_3rnn_fc              (no number)     CNN-3RNN-FC
# Released-code variants, beside their paper rows (same paper row and CCC; the authors' OMG_Challenge code):
#   table3/cnn_1rnn_released                CNN-1RNN as CNN_GRU_1RNN: GRUs on [fc1, pool5]
#   table3/cnn_3rnn_2nd_last_conv_released  CNN-3RNN rows as train_script.py trains CNN_GRU_3RNN:
#   table3/cnn_3rnn_last_conv_released      256 GRU units (--h_units help), no dropout between the GRUs
#   table3/cnn_3rnn_fc_released             (DropoutWrapper keep_prob 1); the paper's text: 128 units, 0.2
# Each row: Aff-Wild pretraining, OMG training from it, validation with the official protocol.
# Expected GPU time (one H100-class GPU, 20k steps of 4x80 frames at 96x96, ~3 x 5.7 GFLOP a frame for
# training): about 1-2 h a run, two runs a row (pretrain + train), so about 1 day for the table.
# Usage: OMG_DATA=... AFFWILD_DATA=... OMG_LABELS=.../omg_ValidationVideos.csv experiments/table3.sh [rows...]
#        SMOKE=1 experiments/table3.sh      # every row for two steps on the synthetic set (CPU)
source "$(dirname "$0")/common.sh"
ROWS=("$@")
if [[ ${#ROWS[@]} -eq 0 ]]; then
  ROWS=(table3/cnn_only table3/cnn_rnn table3/cnn_1rnn table3/cnn_1rnn_released table3/cnn_2rnn table3/cnn_2rnn_fc
        table3/cnn_3rnn_2nd_last_conv table3/cnn_3rnn_last_conv table3/cnn_3rnn_fc
        table3/cnn_3rnn_2nd_last_conv_released table3/cnn_3rnn_last_conv_released table3/cnn_3rnn_fc_released)
fi
for row in "${ROWS[@]}"; do
  [[ "$row" == *_released ]] && echo "== $row: released-code variant" >&2
  run_row "$row"
done
run "$PYTHON" experiments/summary.py --root="$CKPT_ROOT" --table=III
