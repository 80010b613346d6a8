"""Best-of-n with a reward model: n sampled replies, scored as ``score_replies`` scores them, best first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tui_ft.engine.generation.best_of_n import (
    MAX_BEST_OF,
    best_of_problems,
    judged_prompt,
    sample_best_of,
    sample_settings,
    score_replies_to,
)
from tui_ft.engine.generation.sampling import GenerationSettings
from tui_ft.engine.models import list_reward_models

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]


def tiny_reward_run(home: Path, tiny_model_dir: Path, name: str = "rm") -> Path:
    """A reward run of the tiny random model, trained two steps: its scores are all that matter here."""
    from tui_ft.engine.runs import create_run
    from tui_ft.engine.runs.config import TrainConfig
    from tui_ft.engine.training.trainer import train_run

    rows = [{"prompt": f"Tell me about {topic}.", "chosen": f"{topic} is good.", "rejected": f"{topic} is bad."}
            for topic in ("rain", "tea", "snow", "bread", "the sea", "a cat", "trains", "music")]
    data = home / "datasets" / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_dir = create_run(TrainConfig(model=str(tiny_model_dir), dataset=str(data), method="reward", max_steps=2,
                                     batch_size=4, eval_split=0.0, warmup_ratio=0.0, seed=1, name=name), home)
    assert train_run(run_dir) == "finished"
    return run_dir


@pytest.fixture(scope="module")
def reward_home(tmp_path_factory, tiny_model_dir):
    """A workspace with a finished tiny reward run ``rm`` (trained once for the module)."""
    home = tmp_path_factory.mktemp("reward_home")
    (home / "datasets").mkdir()
    (home / "checkpoints").mkdir()
    tiny_reward_run(home, tiny_model_dir)
    return home


def test_best_of_n_needs_a_whole_number_in_range_and_sampling():
    sampled = GenerationSettings(temperature=0.8)
    assert best_of_problems(1, GenerationSettings()) == []  # off: greedy is fine
    assert best_of_problems(4, sampled) == [] and best_of_problems(MAX_BEST_OF, sampled) == []
    assert best_of_problems(0, sampled) == ["best of n must be a whole number from 1 to 16, got 0"]
    assert best_of_problems(17, sampled) == ["best of n must be a whole number from 1 to 16, got 17"]
    assert best_of_problems(True, sampled) != []
    assert best_of_problems(4, GenerationSettings(temperature=0.0)) == [
        "best of 4 needs sampling: set a temperature above 0 (greedy decoding writes the same reply every time)"]


def test_a_seeded_best_of_n_gives_each_sample_its_own_seed():
    assert [sample_settings(GenerationSettings(temperature=1.0, seed=7), i).seed for i in range(3)] == [7, 8, 9]
    unseeded = GenerationSettings(temperature=1.0)
    assert sample_settings(unseeded, 2) is unseeded


def test_the_judged_prompt_is_the_last_user_message():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "one"}, {"role": "user", "content": "second"}]
    assert judged_prompt(messages) == "second"
    with pytest.raises(ValueError, match="no user message"):
        judged_prompt([{"role": "system", "content": "x"}])


def test_best_of_n_returns_n_candidates_ranked_by_the_reward_models_scores(reward_home):
    from tui_ft.engine.evaluation.reward_judge import RewardJudge
    from tui_ft.engine.generation.chat_model import load_chat_model
    from tui_ft.engine.training.reward import load_reward_model, score_replies

    run_dir = reward_home / "checkpoints" / "rm"
    config = json.loads((run_dir / "run.json").read_text())
    chat = load_chat_model(config["model_path"], reward_home, dtype="float32")
    judge = RewardJudge("rm", reward_home)
    messages = [{"role": "user", "content": "Earlier."}, {"role": "assistant", "content": "Yes."},
                {"role": "user", "content": "Tell me about rain."}]
    seen: list[tuple[int, str]] = []
    settings = GenerationSettings(max_new_tokens=8, temperature=1.0, seed=0)
    result = sample_best_of(chat, judge, messages, settings, 4, on_piece=lambda i, p: seen.append((i, p)))

    assert len(result.candidates) == 4 and result.requested == 4 and not result.stopped
    assert sorted(c.sample for c in result.candidates) == [0, 1, 2, 3]
    rewards = [c.reward for c in result.candidates]
    assert rewards == sorted(rewards, reverse=True) and result.best is result.candidates[0]
    assert len({c.text for c in result.candidates}) > 1  # the samples differ (a seed each)
    # The pieces streamed add up to each candidate's text, in the order of sampling.
    for candidate in result.candidates:
        assert "".join(p for i, p in seen if i == candidate.sample) == candidate.text
        assert candidate.stats.new_tokens >= 1
    # The same numbers as the reward model's own scoring of the last prompt and each reply.
    model, tokenizer, template = load_reward_model(run_dir)
    expected = score_replies(model, tokenizer, template, "Tell me about rain.", [c.text for c in result.candidates])
    assert rewards == pytest.approx(expected, abs=1e-5)
    assert score_replies_to(judge, messages, [result.best.text]) == pytest.approx([expected[0]], abs=1e-5)

    # Stopped once the second sample has begun: the finished replies are kept and scored, the cut one is not.
    pieces: list[tuple[int, str]] = []
    stopped = sample_best_of(chat, judge, messages, settings, 4, on_piece=lambda i, p: pieces.append((i, p)),
                             should_stop=lambda: any(i >= 1 for i, _ in pieces))
    assert stopped.stopped and 1 <= len(stopped.candidates) < 4
    assert all(c.stats.stopped_by != "cancelled" and c.reward is not None for c in stopped.candidates)


def test_best_of_n_refuses_greedy_settings_before_generating(reward_home):
    class NoModel:
        def stream(self, *args, **kwargs):
            raise AssertionError("nothing is generated for refused settings")

    with pytest.raises(ValueError, match="best of 3 needs sampling"):
        sample_best_of(NoModel(), None, [{"role": "user", "content": "hi"}], GenerationSettings(), 3)


def test_reward_runs_listed_are_the_finished_reward_models(reward_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(reward_home / "checkpoints", home / "checkpoints")
    unfinished = home / "checkpoints" / "rm-running"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps({**json.loads((home / "checkpoints" / "rm" / "run.json").read_text()),
                                                     "name": "rm-running"}))
    chat_run = home / "checkpoints" / "lora-run"
    (chat_run / "adapter").mkdir(parents=True)
    (chat_run / "run.json").write_text(json.dumps({"name": "lora-run", "method": "lora", "model": "default"}))
    (chat_run / "adapter" / "adapter_config.json").write_text("{}")
    assert list_reward_models(home) == ["rm"]
    assert list_reward_models(tmp_path / "empty") == []


@pytest.mark.parametrize(("flags", "line"), [
    (["--best-of", "3", "--temperature", "1"], "--best-of 3 needs a reward model to pick the best: --reward REWARD_RUN"),
    (["--reward", "rm", "--best-of", "3"],
     "best of 3 needs sampling: set a temperature above 0 (greedy decoding writes the same reply every time)"),
    (["--reward", "rm", "--best-of", "17", "--temperature", "1"], "best of n must be a whole number from 1 to 16, got 17"),
    (["--reward", "nope"], "nope: no run of that name (a reward model is a run trained with --method reward)"),
    (["--reward", "chatty"], "chatty: not a reward model (its method is lora); train one with --method reward"),
    (["--reward", ""], "--reward is empty: give a run trained with --method reward"),
    (["--reward", "rm-no-base"], "rm-no-base: the reward model could not be loaded: "),
])
def test_chat_cli_refuses_bad_reward_flags_in_one_line(tmp_path, flags, line):
    import subprocess
    import sys

    run = tmp_path / "checkpoints" / "chatty"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"name": "chatty", "method": "lora", "model": "default",
                                              "model_path": "/models/x", "template": "chat"}))
    broken = tmp_path / "checkpoints" / "rm-no-base"  # finished, but its base model is gone
    (broken / "adapter").mkdir(parents=True)
    (broken / "run.json").write_text(json.dumps({"name": "rm-no-base", "method": "reward", "model": "default",
                                                 "model_path": str(tmp_path / "gone"), "template": "chat"}))
    (broken / "adapter" / "adapter_config.json").write_text("{}")
    done = subprocess.run([sys.executable, "-m", "tui_ft", "--home", str(tmp_path), "chat", "default", "--prompt", "hi",
                           *flags], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"tui-ft: {line}") and done.stderr.count("\n") == 1, done.stderr


def test_chat_cli_prints_the_reward_and_the_best_of_n(reward_home, capsys):
    from tui_ft.cli import main
    from tui_ft.engine.evaluation.reward_judge import RewardJudge
    from tui_ft.engine.generation.chat_model import load_chat_model

    model_path = json.loads((reward_home / "checkpoints" / "rm" / "run.json").read_text())["model_path"]
    common = ["--home", str(reward_home), "chat", model_path, "--prompt", "Tell me about rain.", "--reward", "rm",
              "--max-new-tokens", "6", "--temperature", "1", "--seed", "0", "--dtype", "float32"]
    capsys.readouterr()
    assert main(common + ["--best-of", "3"]) == 0
    out, err = capsys.readouterr()
    # The same samples and rewards as the engine gives for those settings (seeded).
    chat = load_chat_model(model_path, reward_home, dtype="float32")
    expected = sample_best_of(chat, RewardJudge("rm", reward_home), [{"role": "user", "content": "Tell me about rain."}],
                              GenerationSettings(max_new_tokens=6, temperature=1.0, seed=0), 3)
    rewards = [f"{c.reward:+.3f}" for c in expected.candidates]
    assert out == expected.best.text + "\n"
    assert err.splitlines()[-1] == f"reward {rewards[0]} (rm, best of 3); the others: {rewards[1]}, {rewards[2]}"

    assert main(common) == 0  # one reply: streamed as always, its reward on stderr
    out, err = capsys.readouterr()
    judged = score_replies_to(RewardJudge("rm", reward_home), [{"role": "user", "content": "Tell me about rain."}],
                              [out.removesuffix("\n")])
    assert err.splitlines()[-1] == f"reward {judged[0]:+.3f} (rm)"
