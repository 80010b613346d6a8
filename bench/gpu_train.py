"""LoRA bf16 of a ~1.1B Llama on one GPU: tokens/s and model FLOPs utilisation, beside TRL's SFTTrainer.

Both train the same model (random weights, TinyLlama's shape: hidden 2048, 22 layers,
vocabulary 32000, built here: nothing is downloaded), the same LoRA (rank 8 on q/k/v/o,
alpha 16, dropout 0.05), batch 8 of examples that all fill length 1024, bf16, AdamW at 2e-4,
no activation checkpointing, for ``--steps`` optimizer steps; the first ``--warmup`` steps
are left out of the timing (CUDA start-up, allocator growth).

Model FLOPs per trained token, counted as the work the method needs (recomputation is not
counted, as MFU is defined):

- forward: 2·N (every weight matrix, the output head included) + 4·L·T·d (attention
  scores and the weighted sum, causal positions counted in full as PaLM's appendix does);
- backward: 2·N for the inputs' gradients (the frozen weights get none) + 8·L·T·d; the
  adapter's own FLOPs are under 1 % and left out.

So LoRA is 4·N + 12·L·T·d a token; the full fine-tuning convention 6·N would claim 50 % more
work than was done. MFU divides the FLOPs a second by the GPU's dense bf16 peak (its data
sheet's, from ``PEAK_TFLOPS``; otherwise by a measured large bf16 matmul, said so).

    python bench/gpu_train.py [--steps 30] [--warmup 5] [--only tui_ft|trl]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

# Dense bf16 tensor-core peaks from the data sheets (TFLOP/s, without sparsity), by name fragment.
PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
               "GH200": 989.4, "B200": 2250.0, "A100": 312.0, "A800": 312.0, "L40S": 362.1, "L40": 181.0,
               "A10G": 70.0, "A10": 125.0, "L4": 121.0, "RTX 4090": 165.2, "RTX 6000 Ada": 364.2}
BATCH, LENGTH, RANK, LR = 8, 1024, 8, 2e-4
DEVICE = "cuda"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def peak_flops() -> tuple[float, str]:
    import torch

    name = torch.cuda.get_device_name()
    for fragment, tflops in PEAK_TFLOPS.items():
        if fragment in name:
            return tflops * 1e12, f"{name}: data-sheet dense bf16 peak {tflops:g} TFLOP/s"
    size = 8192
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started, rounds = time.perf_counter(), 20
    for _ in range(rounds):
        a @ b
    torch.cuda.synchronize()
    measured = 2 * size**3 * rounds / (time.perf_counter() - started)
    return measured, f"{name}: not in the table; measured bf16 matmul {measured / 1e12:.0f} TFLOP/s used as the peak"


def matrices_per_layer(config) -> int:
    d = config.hidden_size
    kv = d * config.num_key_value_heads // config.num_attention_heads
    return d * d * 2 + d * kv * 2 + 3 * d * config.intermediate_size  # q, o; k, v; gate, up, down


def flops_per_token(config) -> float:
    d, layers = config.hidden_size, config.num_hidden_layers
    matrices = layers * matrices_per_layer(config) + d * config.vocab_size  # the output head
    return 4 * matrices + 12 * layers * LENGTH * d


def run_tui_ft(home: Path, model_dir: Path, steps: int, warmup: int) -> dict:
    from tui_ft.engine.runs import create_run, read_metrics
    from tui_ft.engine.runs.config import TrainConfig
    from tui_ft.engine.training.trainer import train_run

    run_dir = create_run(TrainConfig(
        model=str(model_dir), dataset=str(home / "long.jsonl"), method="lora", lora_rank=RANK, lora_alpha=16.0,
        lora_dropout=0.05, lora_targets=TARGETS, lr=LR, batch_size=BATCH, max_length=LENGTH, max_steps=steps,
        eval_split=0.0, save_every=0, warmup_ratio=0.0, template="alpaca", device=DEVICE, ignore_memory_plan=True,
        name="tui_ft"), home)
    assert train_run(run_dir) == "finished"
    train = [r for r in read_metrics(run_dir) if r["kind"] == "train"][warmup:]
    return {"tokens": sum(r["tokens"] for r in train), "seconds": sum(r["step_time"] for r in train),
            "step": statistics.median(r["step_time"] for r in train), "loss": train[-1]["loss"]}


def run_trl(home: Path, model_dir: Path, steps: int, warmup: int) -> dict:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in (home / "long.jsonl").read_text().splitlines()]
    texts = [f"### Instruction:\n{r['instruction']}\n\n### Response:\n{r['response']}{tokenizer.eos_token}" for r in rows]
    data = Dataset.from_dict({"text": texts * (BATCH * steps // len(texts) + 1)})
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if DEVICE == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if DEVICE == "cuda":
                torch.cuda.synchronize()
            times[-1] = time.perf_counter() - times[-1]

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(DEVICE)
    config = SFTConfig(output_dir=str(home / "trl"), per_device_train_batch_size=BATCH, max_length=LENGTH,
                       max_steps=steps, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, bf16=True,
                       logging_steps=1, save_strategy="no", report_to=[], packing=False, dataset_text_field="text",
                       gradient_checkpointing=False, dataloader_num_workers=0, seed=1, use_cpu=DEVICE == "cpu")
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer,
                         peft_config=LoraConfig(r=RANK, lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS,
                                                task_type="CAUSAL_LM"),
                         callbacks=[Clock()])
    trainer.train()
    timed = times[warmup:]
    tokens = BATCH * LENGTH * len(timed)  # every example fills the length (checked: they are longer)
    return {"tokens": tokens, "seconds": sum(timed), "step": statistics.median(timed),
            "loss": next((e["loss"] for e in reversed(trainer.state.log_history) if "loss" in e), float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--only", choices=("tui_ft", "trl"))
    parser.add_argument("--smoke", action="store_true",
                        help="on the CPU with a 4-layer model at length 128: checks the script, measures nothing")
    args = parser.parse_args()
    global DEVICE, LENGTH
    if args.smoke:
        DEVICE, LENGTH = "cpu", 128

    import torch
    from transformers import AutoConfig

    import gpu_harness

    peak, peak_note = peak_flops() if not args.smoke else (1e12, "smoke run on the CPU: MFU against 1 TFLOP/s")
    home = Path(tempfile.mkdtemp(prefix="tui_ft_gpu_bench_"))
    try:
        if args.smoke:
            model_dir = gpu_harness.build_llama(home / "model")
        else:
            model_dir = gpu_harness.build_billion_llama(home / "model")
        gpu_harness.write_long_dataset(home / "long.jsonl", examples=16)
        config = AutoConfig.from_pretrained(model_dir)
        per_token = flops_per_token(config)
        print(f"torch {torch.__version__}; {peak_note}")
        params = config.num_hidden_layers * matrices_per_layer(config) + 2 * config.hidden_size * config.vocab_size
        print(f"model: {params / 1e9:.2f}B-parameter Llama (random weights), hidden {config.hidden_size}, "
              f"{config.num_hidden_layers} layers; "
              f"LoRA r{RANK} on {','.join(TARGETS)}; batch {BATCH} × {LENGTH} tokens; {args.steps} steps, "
              f"first {args.warmup} not timed; {per_token / 1e9:.2f} GFLOP a token (4N + 12LTd)")
        results = {}
        for name, runner in (("tui_ft", run_tui_ft), ("trl", run_trl)):
            if args.only and args.only != name:
                continue
            try:
                results[name] = runner(home, model_dir, args.steps, args.warmup)
            except Exception as error:  # a bench reports what failed and goes on to the other side
                print(f"{name}: failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
                continue
            row = results[name]
            rate = row["tokens"] / row["seconds"]
            print(f"{name:7} {rate:10,.0f} tokens/s  MFU {rate * per_token / peak:6.1%}  "
                  f"median step {row['step'] * 1000:7.1f} ms  last loss {row['loss']:.3f}", flush=True)
        if len(results) == 2:
            ratio = (results["tui_ft"]["tokens"] / results["tui_ft"]["seconds"]) / (
                results["trl"]["tokens"] / results["trl"]["seconds"])
            print(f"tui_ft / TRL: {ratio:.2f}× tokens/s (targets: MFU ≥ 35 %, ≥ 1.3× TRL)")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
