#!/usr/bin/env bash
# Table V: fused networks (Sec. III-B3). Paper CCC x 100 on OMG validation (V / A):
#   table5/vgg_fc_rnn_resnet_rnn         45.47 / 27.47   VGG-16-FC-RNN + ResNet-50-RNN + output
#   table5/vgg_fc_rnn_resnet_fc_rnn      44.1  / 27.3    VGG-16-FC-RNN + ResNet-50-FC-RNN + output
#   table5/vgg_fc_rnn_resnet_rnn_fc      45.3  / 25.07   ... + ResNet-50-RNN + FC 64 + output
#   table5/vgg_fc_rnn_resnet_fc_rnn_fc   45    / 24.5    ... + ResNet-50-FC-RNN + FC 64 + output
# Each fused row is trained the paper's two ways (Sec. III-C), from the single networks' weights:
#   (a) <row>/from_affwild: both branches from their Aff-Wild-pretrained single networks;
#   (b) <row>/from_omg:     both branches from the best single networks trained on OMG (Tables III, IV).
# Needs the single networks: table3/cnn_rnn (VGG-16-FC-RNN), table4/cnn_rnn, table4/cnn_fc_rnn (run if missing).
# Expected GPU time: about 1.5x a VGG row a run, 8 runs: about a day.
# Usage: OMG_DATA=... AFFWILD_DATA=... OMG_LABELS=... experiments/table5.sh [rows...];  SMOKE=1 for the CPU smoke run.
source "$(dirname "$0")/common.sh"
ROWS=("$@")
[[ ${#ROWS[@]} -eq 0 ]] && ROWS=(table5/vgg_fc_rnn_resnet_rnn table5/vgg_fc_rnn_resnet_fc_rnn
                                 table5/vgg_fc_rnn_resnet_rnn_fc table5/vgg_fc_rnn_resnet_fc_rnn_fc)
single() {  # single ROW: make sure the single network exists (pretrained and OMG-trained)
  has_run "$1" || run_row "$1"
}
for row in "${ROWS[@]}"; do
  # The branch rows come from the experiment's own config (init.after: VGG branch, ResNet branch).
  read -r vgg resnet < <("$PYTHON" -c "from omg_cnnrnn import experiments; print(*experiments.get('$row').init.after)")
  single "$vgg"
  single "$resnet"
  if [[ -n "${AFFWILD_DATA:-}" ]]; then
    train "$row" "$CKPT_ROOT/$row/from_affwild" "$OMG_DATA" \
      "$CKPT_ROOT/affwild/$vgg" "$CKPT_ROOT/affwild/$resnet"
    evaluate "$CKPT_ROOT/$row/from_affwild"
  fi
  # Way (b) is the row's registered start: train finds the two single networks under $CKPT_ROOT
  # (or, with AFFWILDNET_VGG and AFFWILDNET_RESNET set, starts both branches from the paper's weights).
  train "$row" "$CKPT_ROOT/$row/from_omg" "$OMG_DATA"
  evaluate "$CKPT_ROOT/$row/from_omg"
done
run "$PYTHON" experiments/summary.py --root="$CKPT_ROOT" --table=V
