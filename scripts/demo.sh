#!/usr/bin/env bash
# The main job on the embedded default: fine-tune the packaged MiniLM-L6 teacher on SST-2 (6,000 training rows,
# one epoch), distill it into a 3-layer student through `accelerate launch`, and print teacher vs student metric,
# size and CPU speed. About 10-15 minutes on 2 CPU cores. Re-running skips finished stages and resumes an
# interrupted one from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

GLUE_DIR=${GLUE_DIR:-../shared/glue_data}
OUT=${OUT:-runs/demo-sst2}
TRAIN_ROWS=${TRAIN_ROWS:-6000}
COMMON=(--task_name sst2 --glue_dir "$GLUE_DIR" --max_train_samples "$TRAIN_ROWS" --max_seq_length 64
        --num_train_epochs 1 --per_device_train_batch_size 32 --per_device_eval_batch_size 64
        --save_steps 50 --save_total_limit 1 --logging_steps 25 --report_to none)

if [ ! -f "$OUT/teacher/eval_results.json" ]; then
  echo "== 1/3 fine-tuning the teacher (packaged MiniLM-L6, 6 layers x 384)"
  python scripts/finetune_teacher.py "${COMMON[@]}" --learning_rate 5e-5 --output_dir "$OUT/teacher"
fi

if [ ! -f "$OUT/student/eval_results.json" ]; then
  echo "== 2/3 distilling into a 3-layer student (teacher layers 1, 3, 5)"
  accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
    scripts/distill_glue.py --method kd "${COMMON[@]}" --learning_rate 1e-4 \
    --teacher_model_name_or_path "$OUT/teacher" --student_num_layers 3 --output_dir "$OUT/student"
fi

echo "== 3/3 teacher vs student"
python scripts/compare_models.py --task_name sst2 --glue_dir "$GLUE_DIR" --max_seq_length 64 \
  --output_json "$OUT/comparison.json" "$OUT/teacher" "$OUT/student"
