#!/usr/bin/env bash
# Table V: fused networks (Sec. III-B3). Paper CCC x 100 on OMG validation (V / A):
#   table5/vgg_fc_rnn_resnet_rnn         45.47 / 27.47   VGG-16-FC-RNN + ResNet-50-RNN + output
#   table5/vgg_fc_rnn_resnet_fc_rnn      44.1  / 27.3    VGG-16-FC-RNN + ResNet-50-FC-RNN + output
#   table5/vgg_fc_rnn_resnet_rnn_fc      45.3  / 25.07   ... + ResNet-50-RNN + FC 64 + output
#   table5/vgg_fc_rnn_resnet_fc_rnn_fc   45    / 24.5    ... + ResNet-50-FC-RNN + FC 64 + output
# Each fused row is trained the paper's two ways (Sec. III-C), from the single networks' weights, as its
# experiment registers them (init.ways; its branch rows are init.after):
#   (a) <row>/from_affwild: both branches from their Aff-Wild-pretrained single networks;
#   (b) <row>/from_omg:     both branches from the best single networks trained on OMG (Tables III, IV).
# Needs the single networks: table3/cnn_rnn (VGG-16-FC-RNN), table4/cnn_rnn, table4/cnn_fc_rnn (run if missing).
# Expected GPU time: about 1.5x a VGG row a run, 8 runs: about a day.
# Usage: OMG_DATA=... AFFWILD_DATA=... OMG_LABELS=... experiments/table5.sh [rows...];  SMOKE=1 for the CPU smoke run.
source "$(dirname "$0")/common.sh"
ROWS=("$@")
[[ ${#ROWS[@]} -eq 0 ]] && ROWS=(table5/vgg_fc_rnn_resnet_rnn table5/vgg_fc_rnn_resnet_fc_rnn
                                 table5/vgg_fc_rnn_resnet_rnn_fc table5/vgg_fc_rnn_resnet_fc_rnn_fc)
for row in "${ROWS[@]}"; do run_row "$row"; done  # each way its experiment registers (init.ways)
run "$PYTHON" experiments/summary.py --root="$CKPT_ROOT" --table=V
