# Shared steps of the table scripts: sourced, not run.
#
# The rows' recipes (hyperparameters, the rows each starts after, the fusion rows' training ways, their
# CPU-size variants) live in the registered experiments (omg_cnnrnn/experiments.py); these scripts only
# loop over rows, read those configs (`field`) and call the command lines.
#
# Environment (data and checkpoint locations):
#   OMG_DATA       prepared OMG-Emotion TFRecords (python -m data_prep.prepare_omg ...)
#   AFFWILD_DATA   prepared Aff-Wild TFRecords for pretraining (python -m data_prep.prepare_affwild ...);
#                  unset: no pretraining (the paper pretrains, Sec. III-C)
#   OMG_LABELS     the official validation label CSV (omg_ValidationVideos.csv), for challenge-format CSVs
#   CKPT_ROOT      where workdirs go (default: checkpoints)
#   AFFWILDNET_VGG, AFFWILDNET_RESNET   TF1 prefixes of the released AffWildNet checkpoints, and/or
#   VGGFACE_H5     Keras VGG-Face weights: with them every row starts from the paper's weights with the
#                  paper's values (read by omg_cnnrnn.train); without them rows run the from-scratch
#                  recipe: each row starts from the row its experiment names (init.after, e.g. the
#                  CNN-only row of its table, trained first) and the summary says which start each had
#   PYTHON         interpreter (default: .venv/bin/python, else python3)
#   VARIANT        train every row as its registered variant (omg_cnnrnn.experiments.VARIANTS), e.g.
#                  VARIANT=cpu: the row at CPU size (32x32 crops, short sequences, a hundred-odd steps)
#   SMOKE=1        every row as its `smoke` variant (two steps at tiny shapes) on the synthetic set (CPU proof
#                  that the script works end to end; the numbers mean nothing)
#   DRY_RUN=1      print to stderr, one '+ ' line each, the commands the script would run (data preparation,
#                  train, evaluate, summary) and run none of them; the rows' configs are still read, so the
#                  order, the pairings and the flags are those of a real run (the tests check them this way)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# The scripts run as files (experiments/summary.py, base_run.py) import this checkout's package, as the
# `python -m` commands do (run from $REPO), not whichever checkout the environment has installed.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
CKPT_ROOT="${CKPT_ROOT:-checkpoints}"
VARIANT="${VARIANT:-}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# run CMD...: runs CMD, or with DRY_RUN=1 prints it (shell-quoted) to stderr instead.
# DRY_RUN=1: the rows this script (or the one that called it) would have trained by now, space-separated.
export DRY_RUN_DONE="${DRY_RUN_DONE:- }"
run() {
  if [[ "${DRY_RUN:-0}" == "1" ]]; then
    { printf '+'; printf ' %q' "$@"; printf '\n'; } >&2
  else
    "$@"
  fi
}

if [[ "${SMOKE:-0}" == "1" ]]; then
  SMOKE_DIR="${SMOKE_DIR:-$CKPT_ROOT/smoke}"
  CKPT_ROOT="$SMOKE_DIR/checkpoints"
  if [[ ! -f "$SMOKE_DIR/data/omg/manifest.json" ]]; then
    run "$PYTHON" -m data_prep.synthesize --output_dir="$SMOKE_DIR/synthetic" --seed=0 --preset=smoke
    for split in Train Validation; do
      run "$PYTHON" -m data_prep.prepare_omg --labels="$SMOKE_DIR/synthetic/omg/omg_${split}Videos.csv" \
        --videos="$SMOKE_DIR/synthetic/omg/videos" --output_dir="$SMOKE_DIR/data/omg"
    done
    run "$PYTHON" -m data_prep.prepare_affwild --videos="$SMOKE_DIR/synthetic/affwild/videos" \
      --annotations="$SMOKE_DIR/synthetic/affwild/annotations" --format=affwild --output_dir="$SMOKE_DIR/data/affwild"
  fi
  OMG_DATA="$SMOKE_DIR/data/omg"
  AFFWILD_DATA="$SMOKE_DIR/data/affwild"
  OMG_LABELS="$SMOKE_DIR/synthetic/omg/omg_ValidationVideos.csv"
  VARIANT="${VARIANT:-smoke}"  # Reduced shapes and two steps; everything else is the registered row.
fi
: "${OMG_DATA:?set OMG_DATA to the prepared OMG-Emotion TFRecords (or SMOKE=1)}"

# field ROW KEY: a value of ROW's registered config (e.g. init.after, init.ways, base_experiment).
field() {
  "$PYTHON" -m omg_cnnrnn.experiments --get="$1" --field="$2"
}

# train ROW WORKDIR DATA [INIT_FROM...]: train ROW (as its $VARIANT, if set); resumes if WORKDIR has checkpoints.
train() {
  local row="$1" workdir="$2" data="$3"; shift 3
  local init=()
  for source in "$@"; do init+=(--init_from="$source"); done
  echo "== train $row${VARIANT:+ ($VARIANT variant)} -> $workdir" >&2
  run "$PYTHON" -m omg_cnnrnn.train --experiment="$row${VARIANT:+:$VARIANT}" --workdir="$workdir" \
    --data_dir="$data" --eval_split="${EVAL_SPLIT-validation}" ${init[@]+"${init[@]}"}
}

# pretrain ROW: Aff-Wild pretraining workdir of ROW (empty output if no Aff-Wild data).
pretrain() {
  local row="$1" workdir="$CKPT_ROOT/affwild/$1"
  if [[ -n "${AFFWILD_DATA:-}" ]]; then
    # Aff-Wild has no OMG-style validation split here: pretraining runs its steps and keeps the last.
    EVAL_SPLIT="" train "$row" "$workdir" "$AFFWILD_DATA" >&2
    echo "$workdir"
  fi
}

# evaluate WORKDIR [extra flags]: official protocol on the validation split, into WORKDIR/eval_validation.
evaluate() {
  local workdir="$1"; shift
  local labels=()
  [[ -n "${OMG_LABELS:-}" ]] && labels=(--labels="$OMG_LABELS")
  echo "== evaluate $workdir" >&2
  run "$PYTHON" -m omg_cnnrnn.evaluate --workdir="$workdir" --data_dir="$OMG_DATA" --split=validation \
    --output_dir="$workdir/eval_validation" ${labels[@]+"${labels[@]}"} "$@"
}

# ensure_after ROW: without the paper's weights, train first the rows ROW's experiment starts after
# (init.after, e.g. table3/cnn_only before table3/cnn_rnn) when they have no run yet.
ensure_after() {
  [[ -n "${AFFWILDNET_VGG:-}${AFFWILDNET_RESNET:-}${VGGFACE_H5:-}" ]] && return 0
  local before
  for before in $(field "$1" init.after); do
    has_run "$before" || run_row "$before"
  done
}

# has_run ROW: ROW has a run under $CKPT_ROOT (a row trained several ways: one of its ways has; with
# DRY_RUN=1: or this script would have trained it).
has_run() {
  [[ -f "$CKPT_ROOT/$1/best.json" || "$DRY_RUN_DONE" == *" $1 "* ]] && return 0
  compgen -G "$CKPT_ROOT/$1/*/best.json" > /dev/null
}

# run_ways ROW: a row its experiment trains several ways (init.ways; Table V's fused networks, Sec. III-C),
# each into $CKPT_ROOT/ROW/<way>, after its branch rows (init.after; trained first if they have no run). A way
# that starts from the branches' Aff-Wild pretraining runs needs Aff-Wild data; the other starts as the row's
# experiment says (train finds the branch rows under $CKPT_ROOT, or starts from the paper's weights).
run_ways() {
  local row="$1" branch way start
  local -a branches ways init
  read -r -a branches <<< "$(field "$row" init.after)"
  mapfile -t ways < <(field "$row" init.ways)
  for branch in "${branches[@]}"; do has_run "$branch" || run_row "$branch"; done
  for way in "${ways[@]}"; do
    read -r way start <<< "$way"
    init=()
    if [[ "$start" == "pretrained_branches" ]]; then
      [[ -n "${AFFWILD_DATA:-}" ]] || continue
      for branch in "${branches[@]}"; do init+=("$CKPT_ROOT/affwild/$branch"); done
    fi
    train "$row" "$CKPT_ROOT/$row/$way" "$OMG_DATA" ${init[@]+"${init[@]}"}
    evaluate "$CKPT_ROOT/$row/$way"
  done
}

# run_row ROW: pretrain on Aff-Wild, train on OMG from it, evaluate (the paper's loop for one row); a row
# trained several ways (init.ways) runs each of them (run_ways).
# Without Aff-Wild data the OMG run starts where its experiment says (paper weights, or the row before it).
run_row() {
  local row="$1"
  local init
  if [[ -n "$(field "$row" init.ways)" ]]; then
    run_ways "$row"
  else
    ensure_after "$row"
    init="$(pretrain "$row")"
    train "$row" "$CKPT_ROOT/$row" "$OMG_DATA" $init
    evaluate "$CKPT_ROOT/$row"
  fi
  [[ "${DRY_RUN:-0}" == "1" ]] && DRY_RUN_DONE+="$row "
  return 0
}
