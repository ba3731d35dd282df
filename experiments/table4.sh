#!/usr/bin/env bash
# Table IV: networks based on ResNet-50 (Sec. III-B2). Paper CCC x 100 on OMG validation (V / A):
#   table4/cnn_only     38.4 / 21.64   CNN only (pooled 2048 -> output; single frames, batch 80)
#   table4/cnn_rnn      44.4 / 26.7    basic CNN-RNN
#   table4/cnn_fc_rnn   40.7 / 26.4    CNN-FC-RNN (FC 4096 before the RNN)
# Each row: Aff-Wild pretraining, OMG training from it, validation with the official protocol.
# Expected GPU time: ResNet-50 at 96x96 costs about 1/2 of VGG-16 a frame: roughly half a day for the table.
# Usage: OMG_DATA=... AFFWILD_DATA=... OMG_LABELS=... experiments/table4.sh [rows...];  SMOKE=1 for the CPU smoke run.
source "$(dirname "$0")/common.sh"
ROWS=("$@")
[[ ${#ROWS[@]} -eq 0 ]] && ROWS=(table4/cnn_only table4/cnn_rnn table4/cnn_fc_rnn)
for row in "${ROWS[@]}"; do run_row "$row"; done
run "$PYTHON" experiments/summary.py --root="$CKPT_ROOT" --table=IV
