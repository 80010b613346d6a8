"""Chat speed: decode tokens/s and time to first token, tui_ft against transformers, side by side.

Run: ``.venv/bin/python bench/generate_speed.py [--new-tokens 128] [--repeats 3]``.

Every contender gets the same 300-token chat prompt (an excerpt of the seed chapter to
summarize, in the model's chat template) and generates 128 tokens greedily with EOS ignored, in
one process, round-robin. The table shows medians, and each contender's speed against
``generate()`` fp32 as the median of its per-round ratios: on a noisy shared machine a ratio of
two runs a few seconds apart is steadier than a ratio of two medians. The last lines say
whether tui_ft's greedy tokens equal ``generate()``'s for the same weights and dtype.

Contenders:
- tui_ft at its default dtype (``auto``: bf16 on AMX CPUs and CUDA), the same without
  prompt-lookup decoding, and at fp32: the token loop of ``tui-ft chat`` (lean KV-cache
  decoder, sampler, incremental detokenizer);
- transformers ``model.generate()`` at fp32 (the baseline) and bf16, batch 1;
- the seed chapter's loop (no KV cache: the whole sequence again for every token), fp32,
  fewer tokens since each costs a full forward pass.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui_ft.engine.data.templates import encode_text, render_prompt  # noqa: E402
from tui_ft.engine.generation.chat_model import resolve_dtype  # noqa: E402
from tui_ft.engine.generation.decode_path import choose_decode_path, cpu_identity  # noqa: E402
from tui_ft.engine.generation.detokenize import IncrementalDecoder  # noqa: E402
from tui_ft.engine.generation.fast_cpu.llama_decoder import LlamaDecoder  # noqa: E402
from tui_ft.engine.generation.fast_cpu.prompt_lookup import greedy_with_lookup  # noqa: E402
from tui_ft.engine.generation.sampling import GenerationSettings  # noqa: E402
from tui_ft.engine.generation.token_loop import generate_token_ids  # noqa: E402
from tui_ft.engine.models import load_model, resolve_model  # noqa: E402

SEED_TEXT = Path("/work/shared/seed/fine-tuning-chapter.txt")


def prompt_ids(tokenizer, length: int, offset: int = 0) -> list[int]:
    """A chat prompt of about ``length`` tokens: summarize an excerpt of real prose."""
    source = SEED_TEXT if SEED_TEXT.is_file() else Path(__file__)
    prose = tokenizer(source.read_text())["input_ids"][offset:]

    def render(excerpt_tokens: int) -> list[int]:
        excerpt = tokenizer.decode(prose[:excerpt_tokens])
        message = f"{excerpt}\n\nSummarize the text above in a few sentences."
        return encode_text(tokenizer, render_prompt([{"role": "user", "content": message}], tokenizer, "chat"))

    excerpt = length - len(render(0))
    while excerpt > 0 and len(render(excerpt)) > length:
        excerpt -= 1
    return render(max(excerpt, 0))


def run_tui_ft(model, tokenizer, ids, new_tokens, lookup=True):
    """tui_ft's decode loop with its detokenizer; returns (ttft, decode tokens/s, tokens)."""
    decoder, tokens = IncrementalDecoder(tokenizer), []
    start = time.perf_counter()
    first = None
    settings = GenerationSettings(max_new_tokens=new_tokens)
    for token in generate_token_ids(model, ids, settings, eos_ids=set(), lookup=lookup):
        decoder.push(token)
        tokens.append(token)
        first = first or time.perf_counter()
    end = time.perf_counter()
    return first - start, (len(tokens) - 1) / (end - first), tokens


def run_tui_ft_no_lookup(model, tokenizer, ids, new_tokens):
    """tui_ft without prompt-lookup decoding: one forward pass per token."""
    return run_tui_ft(model, tokenizer, ids, new_tokens, lookup=False)


def lookup_passes(model, ids, new_tokens) -> tuple[int, int]:
    """(tokens, forward passes) of prompt-lookup decoding for this prompt."""
    from contextlib import nullcontext

    counters = {}
    for _ in greedy_with_lookup(LlamaDecoder(model, len(ids) + new_tokens), ids, new_tokens, set(), nullcontext, counters):
        pass
    return counters["tokens"], counters["forward_passes"]


def run_generate(model, tokenizer, ids, new_tokens):
    """transformers' ``generate()``, greedy, batch 1; TTFT is a 1-token ``generate()``."""
    x = torch.tensor([ids])
    # An explicit mask: the pad token is <|im_end|>, which the chat prompt contains, and
    # generate() would otherwise take those for padding and mask them out.
    options = {"attention_mask": torch.ones_like(x), "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    model.generation_config.eos_token_id = None  # ignore EOS: always new_tokens tokens
    with torch.inference_mode():
        start = time.perf_counter()
        model.generate(x, max_new_tokens=1, **options)
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(x, max_new_tokens=new_tokens, **options)
        total = time.perf_counter() - start
    return ttft, (new_tokens - 1) / (total - ttft), out[0, len(ids) :].tolist()


def run_no_cache(model, tokenizer, ids, new_tokens):
    """The seed chapter's loop, greedy: the whole sequence through the model for every token."""
    x = torch.tensor([ids])
    with torch.no_grad():
        start = time.perf_counter()
        first = None
        for _ in range(new_tokens):
            token = model(x).logits[:, -1, :].argmax(-1, keepdim=True)
            x = torch.cat([x, token], dim=1)
            first = first or time.perf_counter()
        end = time.perf_counter()
    return first - start, (new_tokens - 1) / (end - first), x[0, len(ids) :].tolist()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--no-cache-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    # One thread by default: on a shared machine, torch's OpenMP threads wait on each other
    # whenever another process holds a core, and 2-thread timings swung 10x between runs.
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for every contender "
                        "(default 1; 0: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    resolved = resolve_model(args.model, ROOT)
    auto = resolve_dtype("auto")
    fp32, tokenizer = load_model(resolved, dtype=torch.float32)
    auto_model = fp32 if auto == torch.float32 else load_model(resolved, dtype=auto)[0]
    auto_name = str(auto).replace("torch.", "").replace("bfloat16", "bf16").replace("float32", "fp32")
    contenders = [
        (f"tui_ft ({auto_name}, default)", run_tui_ft, auto_model, args.new_tokens),
        (f"tui_ft ({auto_name}, no prompt lookup)", run_tui_ft_no_lookup, auto_model, args.new_tokens),
        ("tui_ft (fp32)", run_tui_ft, fp32, args.new_tokens),
        ("transformers generate() fp32", run_generate, fp32, args.new_tokens),
        (f"transformers generate() {auto_name}", run_generate, auto_model, args.new_tokens),
        ("seed loop, no KV cache, fp32", run_no_cache, fp32, args.no_cache_tokens),
    ]
    if auto == torch.float32:
        contenders = [c for i, c in enumerate(contenders) if i not in (0, 1, 4)]
    ids = prompt_ids(tokenizer, args.prompt_tokens)
    print(f"model {args.model} ({resolved.path.name}), prompt {len(ids)} tokens, greedy, EOS ignored; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    cpu = cpu_identity()
    overrides = ", ".join(f"{k}={v}" for k, v in cpu.items() if k.isupper() and v)
    print(f"cpu {cpu['cpu']}; kernel flags {' '.join(cpu['flags']) or 'none'}{'; ' + overrides if overrides else ''}")
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # what tui-ft chat probes from: torch's default count
    chosen = choose_decode_path(auto_model, "bench", None)  # probed now, remembered nowhere
    torch.set_num_threads(threads)
    print(f"tui-ft chat's decoding path here: {chosen.describe()}")
    warm = prompt_ids(tokenizer, 64, offset=3000)
    for _, run, model, _ in contenders:
        run(model, tokenizer, warm, 4)  # first-call costs (kernel selection) are not the steady state
    results = {name: [] for name, *_ in contenders}
    tokens = {}
    for repeat in range(args.repeats):
        # A different contender goes first each round: the first one after another model ran
        # (its weights out of the caches) measured 40-80 ms more time to first token.
        shift = repeat % len(contenders)
        for name, run, model, count in contenders[shift:] + contenders[:shift]:
            if run is run_no_cache and repeat > 0:
                continue  # seconds per token: once is enough to see the difference
            ttft, rate, out = run(model, tokenizer, ids, count)
            results[name].append((ttft, rate))
            tokens[name] = out
    baseline = [r for _, r in results["transformers generate() fp32"]]
    print(f"\n{'':34} {'decode tok/s':>12} {'TTFT s':>8} {'vs generate() fp32':>19}  per round")
    for name, runs in results.items():
        rate = statistics.median(r for _, r in runs)
        ttft = statistics.median(t for t, _ in runs)
        count = next(c for n, _, _, c in contenders if n == name)
        ratios = [r / base for (_, r), base in zip(runs, baseline, strict=False)]  # the seed loop ran in round 1 only
        note = f"  ({count} new tokens)" if count != args.new_tokens else ""
        rounds = " ".join(f"{ratio:.2f}" for ratio in ratios)
        print(f"{name:34} {rate:12.1f} {ttft:8.3f} {statistics.median(ratios):18.2f}x  {rounds}{note}")
    print()
    pairs = [("tui_ft (fp32)", "transformers generate() fp32")]
    if auto != torch.float32:
        pairs.append((f"tui_ft ({auto_name}, default)", f"transformers generate() {auto_name}"))
    for ours, theirs in pairs:
        same = tokens[ours] == tokens[theirs]
        print(f"greedy output {ours} == {theirs}: {'yes' if same else 'NO'} ({len(tokens[ours])} tokens)")
    seed_same = tokens["seed loop, no KV cache, fp32"] == tokens["tui_ft (fp32)"][: args.no_cache_tokens]
    print(f"greedy output seed loop == tui_ft (fp32), first {args.no_cache_tokens} tokens: {'yes' if seed_same else 'no'}")
    if auto != torch.float32:
        made, passes = lookup_passes(auto_model, ids, args.new_tokens)
        print(f"prompt lookup ({auto_name}): {made} tokens in {passes} forward passes ({made / passes:.2f} tokens a pass)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
