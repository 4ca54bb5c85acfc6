"""Run under `accelerate launch --num_processes 2 --cpu`: distill a tiny teacher and dump each rank's student."""

import sys
from pathlib import Path

import torch
from transformers import BertTokenizerFast

sys.path.insert(0, str(Path(__file__).parent))
from bertdistill import DistillationTrainer, DistillationTrainingConfig, build_student  # noqa: E402

from conftest import make_teacher  # noqa: E402
from test_trainer import tiny_dataset  # noqa: E402


def main(tokenizer_dir: str, out: str) -> None:
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)
    teacher = make_teacher(tokenizer)
    torch.manual_seed(1)
    student = build_student(teacher, num_layers=2)
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    args = DistillationTrainingConfig(
        output_dir=out,
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-2,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        seed=5,
    )
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=tiny_dataset(tokenizer, n=32),
        processing_class=tokenizer,
    )
    trainer.train()
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    final = {k: v.detach().clone() for k, v in trainer.student.state_dict().items()}
    torch.save({"world": world, "initial": initial, "final": final}, Path(out) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
