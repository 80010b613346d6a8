"""The memory plan against measured peaks: lora, qlora, full and freeze at two lengths, checkpointing on and off.

Each case is a run created through the engine (``create_run``, plan check off) and trained for
a few steps by the engine's ``Trainer`` in a child process:

- CPU: the child's peak resident memory over setup and training: the larger of the peak
  while loading (``VmHWM`` after setup, what ``ru_maxrss`` reads) and the peak of the training
  steps (``VmHWM`` reset after setup through ``/proc/self/clear_refs``, which resets
  ``ru_maxrss`` as well); both are printed.
- CUDA: ``torch.cuda.max_memory_allocated`` plus the CUDA context, measured in the child.

Models: the default model (SmolLM2-135M) and a ~1.1B Llama-shaped model with random weights
(hidden 2048, 22 layers, intermediate 5632, 32 heads, 4 kv heads, vocabulary 32000) saved as
bf16 safetensors in a folder kept between runs (``--big-dir``). Cases whose plan exceeds
``--max-fraction`` of the free memory are skipped (the machine is shared).

    .venv/bin/python bench/memory_plan.py --results /tmp/plan.jsonl   # every case (about two hours on 2 cores)
    .venv/bin/python bench/memory_plan.py --models default --lengths 128
    .venv/bin/python bench/memory_plan.py --replan /tmp/plan.jsonl [--markdown]   # measured cases, current plan
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model, load_average  # noqa: E402

BIG_SHAPE = {"hidden_size": 2048, "num_hidden_layers": 22, "intermediate_size": 5632, "num_attention_heads": 32,
             "num_key_value_heads": 4, "vocab_size": 32000, "tie_word_embeddings": False}
METHODS = ("lora", "qlora", "full", "freeze")
EXAMPLES = 8  # two steps of batch 2, and some to spare


def page_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child(run_dir: Path, steps: int) -> None:
    """Set up the run's trainer and train ``steps`` steps; print the peaks as one JSON line."""
    import torch

    from tui_ft.engine.training.trainer import Trainer

    result = {"baseline": page_kib("VmRSS") * 1024}
    trainer = Trainer(run_dir)
    cuda = trainer.config.device.startswith("cuda") or (trainer.config.device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.init()
        free_before, total = torch.cuda.mem_get_info()
        torch.cuda.reset_peak_memory_stats()
    trainer.setup()
    result["setup_peak"] = page_kib("VmHWM") * 1024
    result["setup_anon"], result["setup_file"] = page_kib("RssAnon") * 1024, page_kib("RssFile") * 1024
    try:  # the peak from here on: training alone, without loading (Linux 4.0 and up)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    for _ in range(steps):
        trainer._train_step()
    result["train_peak"] = page_kib("VmHWM") * 1024
    result["train_anon"], result["train_file"] = page_kib("RssAnon") * 1024, page_kib("RssFile") * 1024
    result["device"] = trainer.device
    if cuda:
        free_after, total = torch.cuda.mem_get_info()
        allocated = torch.cuda.max_memory_allocated()
        # The context is what the process holds on the GPU beyond the allocator's reservations.
        context = max(0, total - free_after - torch.cuda.memory_reserved())
        result.update(cuda_peak=allocated + context, cuda_allocated=allocated, cuda_context=context)
    print("RESULT " + json.dumps(result), flush=True)


def measure(run_dir: Path, steps: int) -> dict:
    """Run :func:`child` in a fresh process; its result plus ``ru_maxrss`` (bytes) from ``wait4``."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
    log = open(run_dir / "bench.log", "w")
    process = subprocess.Popen([sys.executable, __file__, "--child", str(run_dir), "--steps", str(steps)],
                               stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    log.close()
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    if not lines:
        tail = (run_dir / "bench.log").read_text(errors="replace").splitlines()[-5:]
        return {"error": f"exit status {status}: " + " | ".join(tail)}
    result = json.loads(lines[-1][len("RESULT "):])
    result["maxrss"] = usage.ru_maxrss * 1024  # KiB on Linux
    return result


def long_text(tokenizer, words: int, seed: int, vocab_limit: int | None) -> str:
    """Random words from the tokenizer's own vocabulary (ids below ``vocab_limit``): every example fills max_length."""
    rng = random.Random(seed)
    vocab = tokenizer.get_vocab()
    pool = [token[1:] for token, index in vocab.items()
            if token.startswith("Ġ") and token[1:].isascii() and token[1:].isalpha() and 3 <= len(token) <= 9
            and (vocab_limit is None or index < vocab_limit)]
    pool.sort()
    if vocab_limit is not None:  # a word must come back as its own token, never a merge beyond the limit
        encoded = tokenizer([" " + word for word in pool], add_special_tokens=False)["input_ids"]
        pool = [word for word, ids in zip(pool, encoded, strict=True) if len(ids) == 1 and ids[0] < vocab_limit]
    return "Once " + " ".join(rng.choice(pool) for _ in range(words))  # the first word has no space before it


def write_dataset(path: Path, tokenizer, vocab_limit: int | None) -> None:
    """Examples longer than any length measured, nearly all of their tokens trained (the plan's worst case)."""
    with path.open("w") as out:
        for index in range(EXAMPLES):
            text = long_text(tokenizer, 1400, index, vocab_limit)
            highest = max(tokenizer(text)["input_ids"])
            if vocab_limit is not None and highest >= vocab_limit:
                raise SystemExit(f"token {highest} is beyond the model's vocabulary of {vocab_limit}")
            out.write(json.dumps({"instruction": "Continue.", "response": text}) + "\n")


def build_big_model(folder: Path, tokenizer_dir: Path) -> Path:
    """A ~1.1B Llama-shaped model with random weights, saved as bf16 safetensors (reused when present)."""
    if (folder / "config.json").is_file() and (folder / "model.safetensors.index.json").is_file():
        return folder
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    print(f"building the ~1.1B model in {folder} (once)", file=sys.stderr, flush=True)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(**BIG_SHAPE, max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         rms_norm_eps=1e-5)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(torch.float32)
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, max_shard_size="1GB")
    tokenizer.save_pretrained(staging)
    del model
    os.replace(staging, folder)
    return folder


def plan_row(row: dict) -> dict:
    """The current plan for a measured case (``row`` holds the run's config and model folder)."""
    from tui_ft.engine.runs.config import TrainConfig
    from tui_ft.engine.runs.memory_plan import plan_memory

    config = TrainConfig.from_dict(row["config"])
    model = row.get("model_config") or Path(row["model_path"])  # the config.json kept in the row, where it is
    return plan_memory(config, model, capacity=None, longest=row.get("longest")).to_dict()


def create(home: Path, model: str, dataset: Path, method: str, length: int, checkpointing: bool, batch: int) -> Path:
    from tui_ft.engine.runs import TrainConfig, create_run

    name = f"{Path(model).name}-{method}-{length}-{'ckpt' if checkpointing else 'full'}"[:60]
    values = dict(model=model, dataset=str(dataset), method=method, name=name, batch_size=batch, max_length=length,
                  max_steps=2, eval_split=0.0, save_every=0, template="alpaca", gradient_checkpointing=checkpointing,
                  ignore_memory_plan=True)
    return create_run(TrainConfig.from_dict(values), home)


def gb(value: float) -> str:
    return f"{value / 1e9:.2f}"


HEADER = (f"{'model':<11} {'method':<7} {'len':>5} {'ckpt':<4} {'plan GB':>8} {'measured':>8} {'ratio':>6}"
          f" {'loading':>8} {'training':>8}  (GB; ratio = plan / measured)")


def show_row(row: dict) -> str:
    head = (f"{row['model']:<11} {row['method']:<7} {row['length']:>5} {'on' if row['checkpointing'] else 'off':<4} "
            f"{gb(row['plan']):>8}")
    if row.get("skipped"):
        return f"{head} skipped: {row['skipped']}"
    if row.get("error"):
        return f"{head} failed: {row['error']}"
    loading = gb(row["setup_peak"]) if "cuda_peak" not in row else "-"
    training = gb(row["train_peak"]) if "cuda_peak" not in row else "-"
    return f"{head} {gb(row['measured']):>8} {row['plan'] / row['measured']:>6.2f} {loading:>8} {training:>8}"


def markdown(rows: list[dict]) -> str:
    """The rows as the README's table."""
    lines = ["| model | method | length | checkpointing | plan GB | measured GB | plan / measured |",
             "|---|---|---:|---|---:|---:|---:|"]
    for row in rows:
        cells = [row["model"], row["method"], str(row["length"]), "on" if row["checkpointing"] else "off", gb(row["plan"])]
        if row.get("skipped") or row.get("error"):
            cells += ["skipped" if row.get("skipped") else "failed", ""]
        else:
            cells += [gb(row["measured"]), f"{row['plan'] / row['measured']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replan(path: Path, as_markdown: bool) -> int:
    """Print the measured rows of ``path`` against the plan as it is now (for calibrating it)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        row["plan"] = plan_row(row)["peak_bytes"]
    if as_markdown:
        print(markdown(rows))
        return 0
    print(HEADER)
    for row in rows:
        print(show_row(row))
    ratios = [row["plan"] / row["measured"] for row in rows if row.get("measured")]
    if ratios:
        print(f"# ratio: {min(ratios):.2f} to {max(ratios):.2f}; within ±25 %: "
              f"{sum(0.75 <= r <= 1.25 for r in ratios)} of {len(ratios)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0,
                        help="training steps per case (default: 1 for LoRA methods, 2 for the others, whose "
                             "optimizer state is allocated at the end of step 1)")
    parser.add_argument("--models", default="default,big", help="default, big, or both (comma-separated)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--lengths", default="128,1024")
    parser.add_argument("--checkpointing", default="off,on")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--big-dir", type=Path, default=Path(tempfile.gettempdir()) / "tui_ft_bench_llama_1b")
    parser.add_argument("--max-fraction", type=float, default=0.8,
                        help="skip a case whose plan needs more than this fraction of the free memory")
    parser.add_argument("--results", type=Path, help="append each measured case here (JSON lines)")
    parser.add_argument("--replan", type=Path, help="print the cases measured in this file against the current plan")
    parser.add_argument("--markdown", action="store_true", help="with --replan: a Markdown table (the README's)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return 0
    if args.replan:
        return replan(args.replan, args.markdown)

    import psutil

    from tui_ft.engine.models import load_tokenizer, resolve_model

    default_dir = resolve_model("default").path
    tokenizer = load_tokenizer(default_dir)
    home = Path(tempfile.mkdtemp(prefix="tui_ft_memplan_"))
    (home / "checkpoints").mkdir()
    models = []
    for name in args.models.split(","):
        if name == "default":
            dataset = home / "long_default.jsonl"
            write_dataset(dataset, tokenizer, None)
            models.append(("default", "default", dataset))
        elif name == "big":
            folder = build_big_model(args.big_dir, default_dir)
            dataset = home / "long_big.jsonl"
            write_dataset(dataset, tokenizer, BIG_SHAPE["vocab_size"])
            models.append(("llama-1.1B", str(folder), dataset))
    print(f"# {cpu_model()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 1e9:.0f} GB; "
          f"load {load_average():.1f}; batch {args.batch_size}, "
          f"{args.steps or '1 (LoRA) or 2'} steps; {time.strftime('%Y-%m-%d')}", flush=True)
    print(HEADER, flush=True)
    for label, model, dataset in models:
        for method in args.methods.split(","):
            if method == "qlora" and not _bitsandbytes():
                print(f"{label:<11} qlora   skipped: bitsandbytes does not import", flush=True)
                continue
            for length in (int(x) for x in args.lengths.split(",")):
                for ckpt in (c == "on" for c in args.checkpointing.split(",")):
                    row = _case(home, label, model, dataset, method, length, ckpt, args)
                    print(show_row(row), flush=True)
                    if args.results:
                        with args.results.open("a") as out:
                            out.write(json.dumps(row) + "\n")
    print(f"# load at the end {load_average():.1f}", flush=True)
    return 0


def _case(home, label, model, dataset, method, length, ckpt, args) -> dict:
    import psutil

    from tui_ft.engine.files import remove_tree
    from tui_ft.engine.runs.folder import read_run_config

    run_dir = create(home, model, dataset, method, length, ckpt, args.batch_size)
    raw = read_run_config(run_dir)
    row = {"model": label, "method": method, "length": length, "checkpointing": ckpt, "model_path": raw["model_path"],
           "config": {key: raw[key] for key in ("method", "batch_size", "grad_accum", "max_length", "lora_rank",
                                                "gradient_checkpointing", "weight_dtype", "device", "precision")},
           "model_config": json.loads((Path(raw["model_path"]) / "config.json").read_text()),
           "longest": length, "batch_size": args.batch_size}  # every example is longer than the length
    plan = plan_row(row)
    row.update(plan=plan["peak_bytes"], components=plan["components"])
    available = psutil.virtual_memory().available
    if plan["peak_bytes"] > args.max_fraction * available:
        row["skipped"] = f"the plan needs more than {args.max_fraction:.0%} of the {gb(available)} GB free"
    else:
        steps = args.steps or (1 if method in ("lora", "qlora") else 2)
        row.update(measure(run_dir, steps), steps=steps)
        if "error" not in row:
            # The process's whole peak: resetting VmHWM after setup resets ru_maxrss too.
            row["measured"] = row.get("cuda_peak", max(row["setup_peak"], row["train_peak"]))
    remove_tree(run_dir)
    return row


def _bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install fails in many ways
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
