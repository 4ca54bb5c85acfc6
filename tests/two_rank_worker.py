"""Run under `accelerate launch` with 2 processes: distill a tiny teacher and dump each rank's trained weights.

    two_rank_worker.py TOKENIZER_DIR OUT_DIR [METHOD]

For `tinybert` the student is narrower than the teacher, so the dump includes the learned projections; for
`dynabert` it is a copy of the teacher trained in DynaBERT's width-and-depth stage; `tinybert-cached` is `tinybert`
reading its teacher from a teacher-output cache in OUT_DIR/cache (the dump says how often each rank ran the teacher
while its trainer was built); `kd-movement` is `kd` with movement pruning to 50% sparsity (the scores are
parameters of the DDP-wrapped student; the dump holds the weights with the final masks multiplied in); `dml` trains the
student with a peer (in the wrapper's extras) and the teacher; `byot` trains a 2-layer student with exits after both
layers and no teacher; `grafting` grafts the student and a peer after every step (no teacher); `gan_kd` trains a
discriminator in the extras.
"""

import sys
from pathlib import Path

import torch
from transformers import BertForSequenceClassification, BertTokenizerFast

sys.path.insert(0, str(Path(__file__).parent))
from bertdistill import build_student, get_method  # noqa: E402
from bertdistill.glue_run import run_script  # noqa: E402

from conftest import make_teacher, tiny_config  # noqa: E402
from test_trainer import tiny_dataset  # noqa: E402


def main(tokenizer_dir: str, out: str, method: str = "kd") -> None:
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)
    teacher = make_teacher(tokenizer)
    extra = {}
    if method == "tinybert-cached":
        method, extra = "tinybert", {"cache_teacher_outputs": True, "teacher_cache_dir": str(Path(out) / "cache")}
    if method == "kd-movement":
        method, extra = "kd", {"sparsity": 0.5, "pruning_method": "movement", "pruning_frequency": 1}
    if method == "feature":  # losses with parts (VID, AB) and a relation loss, on a narrower student
        extra = {"feature_losses": "vid,ab,rkd", "stage": "task", "layer_map": "1:2,2:4"}
    forwards = []
    teacher.register_forward_hook(lambda *_: forwards.append(1))
    torch.manual_seed(1)
    if method in ("tinybert", "feature"):
        config = tiny_config(len(tokenizer), layers=2)
        config.hidden_size, config.intermediate_size = 16, 32
        student = BertForSequenceClassification(config)
    elif method == "dynabert":
        student = make_teacher(tokenizer)  # a copy of the teacher
        teacher.config.dynabert_rewired = True  # the width stage's model: run at each sub-network's width
    else:
        student = build_student(teacher, num_layers=2)
    # DynaBERT's width-and-depth stage: most sub-networks leave layers unused, so only the full one may sync.
    if method == "dynabert":
        extra["stage"] = "width_depth"
    teacher_model = teacher
    if method == "byot":  # no teacher: the student's deepest exit teaches its first
        teacher_model, extra = None, {"exit_layers": "1"}
    if method == "grafting":  # no teacher: the student and a peer graft each other after every step
        teacher_model, extra = None, {"graft_every_steps": 1}
    method = get_method(method)
    args = method.config_class(output_dir=out, per_device_train_batch_size=4, max_steps=3, learning_rate=1e-2,
                               save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, seed=5,
                               **extra)  # fmt: skip
    data = tiny_dataset(tokenizer, n=32)
    trainer = method.trainer_class(
        model=student, teacher_model=teacher_model, args=args, train_dataset=data, processing_class=tokenizer
    )
    initial = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    teacher_forwards_in_init = len(forwards)
    trainer.train()
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    final = {k: v.detach().clone() for k, v in trainer.accelerator.unwrap_model(trainer.model).state_dict().items()}
    dump = {"world": world, "initial": initial, "final": final, "teacher_forwards": len(forwards),
            "teacher_forwards_in_init": teacher_forwards_in_init}  # fmt: skip
    torch.save(dump, Path(out) / f"rank{rank}.pt")


if __name__ == "__main__":
    run_script(lambda argv: main(*argv), sys.argv[1:])
