"""Training throughput: LoRA SFT of the default model, tui_ft against TRL and the seed's loop.

Run: ``.venv/bin/python bench/train_throughput.py [--max-steps N | --epochs 1] [--only a,b]``.

Every contender trains the same LoRA adapter (r 8, alpha 16, dropout 0.05 on q/k/v/o) of
the default model (SmolLM2-135M) with the alpaca template, batch 8, max length 256, fp32
unless its name says otherwise, lr 2e-4, on a dataset generated here: 200 examples of 20–300
tokens (shipped examples with their responses repeated to a drawn length). They run one
after the other in this process (the same minute, the same threads, the same
``OMP_WAIT_POLICY`` as the training worker), so a noisy shared machine slows them alike.

tokens/s is DESIGN.md's: every non-padding token processed / the summed wall time of the
steps (data collation, forward, backward, optimizer; not model loading). The "held-out loss"
column scores each trained adapter the same way (token-weighted NLL of the response tokens
of 48 examples that no contender trains on), so it compares what the runs learned; "train
loss" is each contender's own last-5-steps mean (the seed's counts prompt tokens too).

Contenders:
- ``tui_ft``: the engine's Trainer with its recommended CPU settings (see RECOMMENDED);
- ``tui_ft fp32``: the same with ``precision=fp32`` and nothing else;
- ``TRL``: ``SFTTrainer`` + peft, prompt/completion data (loss on the completion),
  ``bf16=False``, ``gradient_checkpointing=False`` (its fair CPU settings); its defaults
  otherwise (fused AdamW, dynamic padding, random batches);
- ``seed loop``: the seed chapter's ``fine_tune`` (pad every example to the max length with
  id 0, loss on every non-pad token, full logits, plain AdamW, constant lr);
- ``TRL bf16+grouped`` (only with ``--only trl_tuned``): TRL given tui_ft's two main levers,
  bf16 autocast and length-grouped batches.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as tui_ft's worker; set before torch loads
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe_machine, load_average, load_line  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' deprecation notes, once per step

SOURCES = ("seed_instructions_20.jsonl", "demo_veloria.jsonl", "seed_instructions.jsonl")
BATCH, MAX_LENGTH, LR, SEED = 8, 256, 2e-4, 42
LORA = {"lora_rank": 8, "lora_alpha": 16.0, "lora_dropout": 0.05}
EVAL_EXAMPLES = 48
RECOMMENDED = {"precision": "auto"}  # tui_ft's defaults on CPU (see the Performance section of the README)
DEFAULT_STEPS = 6  # one epoch (25 steps) takes about 15 minutes here: --max-steps 0
CONTENDERS = ("tui_ft", "tui_ft_fp32", "trl", "seed")
EXTRA_CONTENDERS = ("trl_tuned",)  # run only when named with --only
LABELS = {"tui_ft": "tui_ft", "tui_ft_fp32": "tui_ft fp32", "trl": "TRL SFTTrainer", "seed": "seed loop",
          "trl_tuned": "TRL bf16+grouped"}
TRL_TUNED = {"bf16": True, "train_sampling_strategy": "group_by_length"}  # TRL with tui_ft's two main levers


@dataclass
class Result:
    """One contender's numbers."""

    name: str
    tokens: int  # non-padding tokens processed
    padded: int  # positions computed, padding included
    seconds: float  # summed step wall time
    cpu_seconds: float  # this process's CPU time over the training loop (both threads)
    steps: int
    train_loss: float
    heldout_loss: float
    load: float  # 1-minute load average when it finished

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    @property
    def tokens_per_cpu_s(self) -> float:
        """Less sensitive to other processes than wall time: a ratio check on a busy machine."""
        return self.tokens / max(self.cpu_seconds, 1e-9)


# ----- data -------------------------------------------------------------------------------


def varied_records(tokenizer, count: int, seed: int) -> list[dict]:
    """``count`` instruction examples whose rendered length is drawn uniformly from 20–300 tokens.

    Each takes a shipped example and repeats its response's tokens up to the drawn length, so
    lengths vary as in real data while the text stays learnable.
    """
    base = []
    for name in SOURCES:
        for line in (ROOT / "datasets" / name).read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                base.append((record["instruction"], record.get("response") or record["output"]))
    rng = random.Random(seed)
    records = []
    for index in range(count):
        instruction, response = base[index % len(base)]
        prompt = f"### Instruction:\n{instruction}\n\n### Response:\n"
        room = max(2, rng.randint(20, 300) - len(tokenizer.encode(prompt)) - 1)  # 1 for EOS
        unit = tokenizer.encode(response + " ")
        ids = (unit * (room // len(unit) + 1))[:room]
        records.append({"instruction": instruction, "response": tokenizer.decode(ids).strip()})
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def heldout_loss(model, objective) -> float:
    """Token-weighted NLL of the response tokens of ``objective``'s items, in fp32, no dropout."""
    import torch

    model.eval()
    nll = trained = 0.0
    with torch.no_grad():
        for indices in objective.eval_batches(BATCH):
            out = objective.forward(model, objective.collate(indices, "cpu"))
            nll, trained = nll + float(out.stats["nll"]), trained + float(out.stats["trained"])
    model.train()
    return nll / max(1, trained)


def last_mean(values: list[float], count: int = 5) -> float:
    tail = values[-count:]
    return sum(tail) / max(1, len(tail))


# ----- contenders ----------------------------------------------------------------------------


def run_tui_ft(name: str, home: Path, train_path: Path, steps: int | None, heldout, settings: dict) -> Result:
    """The engine's Trainer, in-process (the worker adds only process start-up)."""
    from tui_ft.engine.runs import create_run, read_metrics
    from tui_ft.engine.runs.config import TrainConfig
    from tui_ft.engine.training.trainer import Trainer

    config = TrainConfig(model="default", dataset=str(train_path), method="lora", epochs=1, max_steps=steps,
                         batch_size=BATCH, max_length=MAX_LENGTH, template="alpaca", lr=LR, eval_split=0.0,
                         save_every=0, seed=SEED, name=name, **LORA, **settings)
    trainer = Trainer(create_run(config, home))
    with contextlib.redirect_stdout(io.StringIO()):  # the worker's log lines
        trainer.setup()
        cpu = time.process_time()
        trainer.train()
        cpu = time.process_time() - cpu
    records = [r for r in read_metrics(trainer.run_dir) if r["kind"] == "train"]
    tokens = sum(r["tokens"] for r in records)
    result = Result(LABELS[name], tokens, tokens + sum(r["padding"] for r in records),
                    sum(r["step_time"] for r in records), cpu, len(records), last_mean([r["loss"] for r in records]),
                    heldout_loss(trainer.model, heldout), load_average())
    trainer.metrics.close()
    return result


def lora_model(model_path: Path):
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, local_files_only=True)
    model.config.use_cache = False
    return get_peft_model(model, peft_config())


def peft_config():
    from peft import LoraConfig

    return LoraConfig(r=LORA["lora_rank"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"],
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")


def run_trl(model_path: Path, records: list[dict], steps: int | None, heldout, out: Path, name: str = "trl",
            overrides: dict | None = None) -> Result:
    """TRL's SFTTrainer on prompt/completion pairs (``overrides`` for its SFTConfig); step times from a callback."""
    import torch
    from transformers import AutoModelForCausalLM, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset
    from tui_ft.engine.models import load_tokenizer

    class StepTimes(TrainerCallback):
        """Wall time between consecutive step ends (the first from the start of training)."""

        def __init__(self):
            self.times: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.times = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    tokenizer = load_tokenizer(model_path)
    data = Dataset.from_list([{"prompt": f"### Instruction:\n{r['instruction']}\n\n### Response:\n",
                               "completion": r["response"]} for r in records])
    total = steps or -(-len(records) // BATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = SFTConfig(output_dir=str(out), use_cpu=True, bf16=False, gradient_checkpointing=False,
                         per_device_train_batch_size=BATCH, max_length=MAX_LENGTH, num_train_epochs=1,
                         max_steps=steps or -1, learning_rate=LR, lr_scheduler_type="cosine",
                         warmup_steps=int(0.1 * total), weight_decay=0.0, max_grad_norm=1.0, logging_steps=1,
                         save_strategy="no", report_to="none", seed=SEED, disable_tqdm=True, **(overrides or {}))
        torch.manual_seed(SEED)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, local_files_only=True)
        timer = StepTimes()
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                             peft_config=peft_config(), callbacks=[timer])
        collate, positions = trainer.data_collator, []

        def counting_collator(features):  # padded positions, which TRL does not log
            batch = collate(features)
            positions.append(batch["input_ids"].numel())
            return batch

        trainer.data_collator = counting_collator
        trainer.remove_callback(PrinterCallback)  # it prints every log line
        cpu = time.process_time()
        trainer.train()
        cpu = time.process_time() - cpu
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    # The data loader fetches one batch ahead: count the batches that were trained on.
    return Result(LABELS[name], int(logs[-1]["num_tokens"]), sum(positions[: len(logs)]), timer.times[-1] - timer.times[0],
                  cpu, len(logs), last_mean([e["loss"] for e in logs]), heldout_loss(trainer.model, heldout), load_average())


def run_seed_loop(model_path: Path, records: list[dict], steps: int | None, heldout) -> Result:
    """The seed chapter's ``fine_tune`` loop around a peft LoRA model (its padding, its loss)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from tui_ft.engine.models import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    rows = []
    for r in records:  # InstructionDataset: render, encode, truncate, pad with 0 to max_length
        ids = tokenizer.encode(f"### Instruction:\n{r['instruction']}\n\n### Response:\n{r['response']}"
                               + tokenizer.eos_token)[:MAX_LENGTH]
        rows.append(ids + [0] * (MAX_LENGTH - len(ids)))
    data = [(torch.tensor(row[:-1]), torch.tensor(row[1:])) for row in rows]
    model = lora_model(model_path)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss(ignore_index=0)
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(SEED))
    losses, seconds, tokens, padded = [], 0.0, 0, 0
    cpu = time.process_time()
    for batch_x, batch_y in loader:
        if steps is not None and len(losses) >= steps:
            break
        started = time.perf_counter()
        logits = model(batch_x).logits
        B, T, C = logits.shape
        loss = loss_fn(logits.view(B * T, C), batch_y.view(B * T))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        losses.append(loss.item())
        seconds += time.perf_counter() - started
        tokens += int((batch_x != 0).sum())
        padded += batch_x.numel()
    cpu = time.process_time() - cpu
    return Result(LABELS["seed"], tokens, padded, seconds, cpu, len(losses), last_mean(losses),
                  heldout_loss(model, heldout), load_average())


# ----- the report --------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    """tokens/s, the ratio to TRL, padding share, seconds a step, and both losses."""
    trl = next((r for r in results if r.name == LABELS["trl"]), None)
    print(f"\n{'contender':<16}{'tokens/s':>9}{'x TRL':>7}{'tok/cpu-s':>10}{'x TRL':>7}{'padding':>8}{'s/step':>8}"
          f"{'steps':>6}{'train loss':>11}{'held-out':>9}{'load':>6}")
    for r in results:
        ratio = f"{r.tokens_per_s / trl.tokens_per_s:.2f}" if trl else "-"
        cpu_ratio = f"{r.tokens_per_cpu_s / trl.tokens_per_cpu_s:.2f}" if trl else "-"
        padding = 1 - r.tokens / r.padded if r.padded else 0.0
        print(f"{r.name:<16}{r.tokens_per_s:>9.0f}{ratio:>7}{r.tokens_per_cpu_s:>10.0f}{cpu_ratio:>7}{padding:>8.0%}"
              f"{r.seconds / max(1, r.steps):>8.2f}{r.steps:>6}{r.train_loss:>11.4f}{r.heldout_loss:>9.4f}{r.load:>6.2f}")
    print("tokens/s: non-padding tokens / summed step wall time (DESIGN.md); tok/cpu-s: the same per CPU second\n"
          "of this process (both threads), steadier when other processes share the cores. train loss: the last\n"
          "5 steps' mean, each contender's own (the seed's counts prompt tokens too); held-out: response-token\n"
          f"NLL of {EVAL_EXAMPLES} unseen examples, scored alike for every contender (fp32). load: 1-min load average.")


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=DEFAULT_STEPS,
                        help=f"optimizer steps per contender (default {DEFAULT_STEPS}; 0 for one whole epoch)")
    parser.add_argument("--examples", type=int, default=200, help="training examples (default 200)")
    parser.add_argument("--only", default=",".join(CONTENDERS),
                        help=f"comma-separated contenders (default {','.join(CONTENDERS)}; also {','.join(EXTRA_CONTENDERS)})")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's, one per core)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch

    from tui_ft.engine.data import load_dataset, sft_examples
    from tui_ft.engine.models import load_tokenizer, resolve_model
    from tui_ft.engine.training.sft import SFTObjective

    args = parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(CONTENDERS) - set(EXTRA_CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contender(s): {', '.join(sorted(unknown))}; "
                         f"pick from {', '.join(CONTENDERS + EXTRA_CONTENDERS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.max_steps or None
    print(describe_machine())
    print(load_line("start"))
    with tempfile.TemporaryDirectory(prefix="tui_ft_bench_") as tmp:
        home = Path(tmp)
        (home / "checkpoints").mkdir()
        model_path = resolve_model("default", home).path
        tokenizer = load_tokenizer(model_path)
        records = varied_records(tokenizer, args.examples + EVAL_EXAMPLES, SEED)
        train_path = write_jsonl(home / "bench_varied.jsonl", records[: args.examples])
        held_path = write_jsonl(home / "bench_heldout.jsonl", records[args.examples :])
        heldout = SFTObjective(sft_examples(load_dataset(held_path)), tokenizer, "alpaca", MAX_LENGTH, False)
        lengths = sorted(len(tokenizer.encode(f"{r['instruction']} {r['response']}")) for r in records[: args.examples])
        span = f"{steps} steps of" if steps else "one epoch of"
        print(f"LoRA r8/a16 q,k,v,o; batch {BATCH}, max length {MAX_LENGTH}, alpaca; {span} {args.examples} examples "
              f"(about {lengths[0]}-{lengths[-1]} tokens, median {lengths[len(lengths) // 2]})")
        results = []
        for name in chosen:
            started = time.perf_counter()
            if name.startswith("tui_ft"):
                settings = RECOMMENDED if name == "tui_ft" else {"precision": "fp32"}
                result = run_tui_ft(name, home, train_path, steps, heldout, settings)
            elif name.startswith("trl"):
                result = run_trl(model_path, records[: args.examples], steps, heldout, home / name, name,
                                 TRL_TUNED if name == "trl_tuned" else None)
            else:
                result = run_seed_loop(model_path, records[: args.examples], steps, heldout)
            print(f"  {result.name}: {result.tokens_per_s:.0f} tokens/s over {result.steps} steps "
                  f"({time.perf_counter() - started:.0f} s with loading; load {result.load:.2f})", flush=True)
            results.append(result)
    print_table(results)
    print(load_line("end"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
