"""``tui-ft chat REF``: talk to a model or a run, as a REPL or one reply to ``--prompt``.

With ``--reward REWARD_RUN`` a reward model scores every reply (stderr, like ``--stats``: stdout
keeps the reply alone); with ``--best-of N`` too, N replies are sampled and the best one is
printed, the others' rewards on stderr.
"""

from __future__ import annotations

import sys

from tui_ft.commands.devices import use_device

ORDER = 40
HELP_LINE = "type a message; /reset starts a new conversation, /quit (or Ctrl+D) leaves"


def add_parser(commands) -> None:
    parser = commands.add_parser("chat", help="chat with a model or run (a REPL, or one reply to --prompt)")
    parser.add_argument("ref", metavar="REF",
                        help="default, a model folder, a cached model, a run name, or a Hub id org/name[@revision] "
                             "(downloaded once)")
    parser.add_argument("--prompt", help="answer this one message on stdout and exit")
    parser.add_argument("--system", help="a system message that starts the conversation")
    parser.add_argument("--max-new-tokens", type=int, default=256, metavar="N")
    parser.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 is greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P")
    parser.add_argument("--top-k", type=int, default=0, metavar="K", help="0 keeps every token")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, metavar="X")
    parser.add_argument("--seed", type=int, help="seed for sampling (reproducible replies)")
    parser.add_argument("--template", choices=("alpaca", "chat"), help="prompt template (default: the run's, else the model's)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="weights for inference (auto: bf16 on CUDA and AMX CPUs, else float32)")
    parser.add_argument("--device", metavar="DEV", help="auto, cpu, cuda, cuda:N or mps "
                        "(default: $TUI_FT_DEVICE, else auto: keep chat and evaluation off a training GPU)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: torch's choice; 1 can be faster on a busy machine)")
    parser.add_argument("--base", action="store_true", help="a run with an adapter answers with the adapter off")
    parser.add_argument("--stats", action="store_true", help="print tokens/s and time to first token on stderr")
    parser.add_argument("--reward", metavar="REWARD_RUN",
                        help="a finished --method reward run: print each reply's reward on stderr")
    parser.add_argument("--best-of", type=int, default=1, metavar="N",
                        help="with --reward: sample N replies (needs --temperature above 0) and print the best")
    parser.set_defaults(handler=run)


def _settings(args):
    from tui_ft.cli import UserError
    from tui_ft.engine.generation.sampling import GenerationSettings

    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )
    problems = settings.problems()
    if problems:
        raise UserError(problems[0])
    return settings


def _say(chat, messages, settings, args, judge=None) -> str:
    """Stream one reply to stdout; Ctrl+C stops the reply (not the program) in the REPL."""
    if judge is not None and args.best_of > 1:
        return _say_best_of(chat, messages, settings, args, judge)
    pieces: list[str] = []
    try:
        for piece in chat.stream(messages, settings, use_adapter=not args.base, template=args.template):
            pieces.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        if args.prompt is not None:
            raise
        sys.stdout.write(" [stopped]")
    sys.stdout.write("\n")
    sys.stdout.flush()
    if chat.last_notice:
        print(f"tui-ft: {chat.last_notice}", file=sys.stderr)
    if args.stats and chat.last_stats is not None:
        _print_stats(chat.last_stats, chat.path)
    reply = "".join(pieces)
    if judge is not None:
        from tui_ft.engine.generation.best_of_n import format_reward, score_replies_to

        print(f"reward {format_reward(score_replies_to(judge, messages, [reply])[0])} ({judge.name})", file=sys.stderr)
    return reply


def _print_stats(s, path=None) -> None:
    print(
        f"{s.new_tokens} tokens, {s.tokens_per_s:.1f} tokens/s, first token {s.time_to_first_token:.3f} s "
        f"(prompt {s.prompt_tokens} tokens, stopped by {s.stopped_by})",
        file=sys.stderr,
    )
    if path is not None:
        print(f"decoding: {path.describe()}", file=sys.stderr)


def _say_best_of(chat, messages, settings, args, judge) -> str:
    """Sample ``--best-of`` replies, print the best on stdout and every reward on stderr.

    Ctrl+C in the REPL drops this answer (the conversation goes on without it), as it stops a
    streamed reply.
    """
    from tui_ft.engine.generation.best_of_n import format_reward, sample_best_of

    progress = sys.stderr.isatty()
    shown = []  # the samples whose progress line was written

    def sampled(sample: int, _piece: str) -> None:
        if progress and sample not in shown:
            shown.append(sample)
            sys.stderr.write(f"\rsampling {sample + 1}/{args.best_of}…")
            sys.stderr.flush()

    try:
        result = sample_best_of(chat, judge, messages, settings, args.best_of, use_adapter=not args.base,
                                on_piece=sampled, template=args.template)
    except KeyboardInterrupt:
        if args.prompt is not None:
            raise
        result = None
    if progress:
        sys.stderr.write("\r\033[K")
    if result is None or result.best is None:
        print("[stopped]")
        return ""
    best = result.best
    print(best.text)
    if best.notice:
        print(f"tui-ft: {best.notice}", file=sys.stderr)
    if args.stats and best.stats is not None:
        _print_stats(best.stats, chat.path)
    others = ", ".join(format_reward(c.reward) for c in result.candidates[1:])
    print(f"reward {format_reward(best.reward)} ({judge.name}, best of {result.requested})"
          + (f"; the others: {others}" if others else ""), file=sys.stderr)
    return best.text


def _typed_lines():
    """Lines typed at a ``> `` prompt (with line editing), until Ctrl+D."""
    try:
        import readline  # noqa: F401  (importing it gives input() history and editing)
    except ImportError:
        pass
    while True:
        try:
            yield input("> ")
        except EOFError:
            print(file=sys.stderr)
            return


def run(args) -> int:
    use_device(args.device)
    from tui_ft.cli import UserError

    try:
        return _chat(args)
    except ValueError as error:  # a template this tokenizer cannot render, a bad conversation
        raise UserError(str(error).splitlines()[0] if str(error) else "invalid input") from None


def _chat(args) -> int:
    from tui_ft.cli import UserError
    from tui_ft.engine.generation.chat_model import load_chat_model

    settings = _settings(args)  # bad values fail before the slow imports
    if args.prompt is not None and not args.prompt.strip():
        raise UserError("--prompt is empty")
    judge = _reward_judge(args, settings)
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr carries only our notices and --stats
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from tui_ft.engine.runs.memory_plan import check_loading

    if judge is not None:
        _load_judge(judge)  # before the chat model: a broken reward run fails at once
    chat = load_chat_model(args.ref, args.home, args.dtype, fits=check_loading, threads=args.threads)
    history = [{"role": "system", "content": args.system}] if args.system else []
    if args.prompt is not None:
        _say(chat, history + [{"role": "user", "content": args.prompt}], settings, args, judge)
        return 0
    interactive = sys.stdin.isatty()
    if interactive:
        dtype = str(next(chat.model.parameters()).dtype).replace("torch.", "")
        judged = f", rewards by {judge.name}" + (f", best of {args.best_of}" if args.best_of > 1 else "") if judge else ""
        print(f"{args.ref} ({chat.template} template, {dtype}{judged}): {HELP_LINE}", file=sys.stderr)
    messages = list(history)
    for line in _typed_lines() if interactive else sys.stdin:
        text = line.strip()
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            messages = list(history)
            print("(new conversation)", file=sys.stderr)
            continue
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": _say(chat, messages, settings, args, judge)})
    return 0


def _reward_judge(args, settings):
    """The reward model of ``--reward`` (checked, not loaded yet), or None; bad flags fail here, before any weights load."""
    from tui_ft.cli import UserError
    from tui_ft.engine.generation.best_of_n import best_of_problems

    problems = best_of_problems(args.best_of, settings)
    if problems:
        raise UserError(problems[0])
    if args.reward is None:
        if args.best_of > 1:
            raise UserError(f"--best-of {args.best_of} needs a reward model to pick the best: --reward REWARD_RUN")
        return None
    if not args.reward.strip():
        raise UserError("--reward is empty: give a run trained with --method reward")
    from tui_ft.engine.evaluation.reward_judge import RewardJudge

    return RewardJudge(args.reward, args.home)  # a ModelError (one line) for no such run, not a reward model, no weights


def _load_judge(judge) -> None:
    """Load the reward model now: a broken one fails in one line before any reply is generated."""
    from tui_ft.cli import UserError

    try:
        judge.load()
    except Exception as error:  # noqa: BLE001  a reward run can be broken in any way (a missing base, bad weights)
        line = (str(error).splitlines() or [type(error).__name__])[0]
        raise UserError(f"{judge.name}: the reward model could not be loaded: {line}") from None
