"""``tui-ft score REWARD_RUN --prompt P --reply R [--reply R2 ...]``: what a reward model thinks of replies."""

from __future__ import annotations

ORDER = 50


def add_parser(commands) -> None:
    parser = commands.add_parser("score", help="score replies to a prompt with a reward model (a --method reward run)")
    parser.add_argument("run", metavar="REWARD_RUN", help="a finished run trained with --method reward")
    parser.add_argument("--prompt", required=True, help="the user's message")
    parser.add_argument("--reply", required=True, action="append", dest="replies", metavar="REPLY",
                        help="a reply to score; give several to compare them")
    parser.add_argument("--json", action="store_true", help="the rewards as JSON")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the base model's own Python code (auto_map); run.json saying so is not enough")
    parser.set_defaults(handler=run)


def run(args) -> int:
    import orjson

    from tui_ft.cli import UserError
    from tui_ft.engine.evaluation.reward_judge import RewardJudge
    from tui_ft.safe_text import clean

    if not args.prompt.strip() or not all(reply.strip() for reply in args.replies):
        raise UserError("--prompt and every --reply need some text")
    judge = RewardJudge(args.run, args.home)  # checked before torch and the weights load (seconds)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    judge.load(trust_remote_code=args.trust_remote_code)
    scores = judge.score([(args.prompt, reply) for reply in args.replies])
    if args.json:
        print(orjson.dumps([{"reply": reply, "reward": score} for reply, score in zip(args.replies, scores,
                                                                                       strict=True)]).decode())
        return 0
    best = max(range(len(scores)), key=scores.__getitem__)
    for index, (reply, score) in enumerate(zip(args.replies, scores, strict=True)):
        mark = "*" if len(scores) > 1 and index == best else " "
        shown = clean(reply if len(reply) <= 70 else reply[:67] + "...")
        print(f"{mark} {score:+8.3f}  {shown}")
    return 0
