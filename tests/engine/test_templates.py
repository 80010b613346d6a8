"""Templates and the loss mask, on the default model's tokenizer (SmolLM2, ChatML, EOS ``<|im_end|>``).

The checks decode the labelled tokens and compare them with the exact strings that should
be trained on, so a mask that is off by one token fails.
"""

from __future__ import annotations

import pytest

from tui_ft.engine.data import Example
from tui_ft.engine.data.templates import (
    IGNORE_INDEX,
    default_template,
    encode_text,
    mask_segments,
    render,
    render_prompt,
    tokenize_example,
)

EOS = "<|im_end|>"


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def trained_runs(tokenized, tokenizer) -> list[str]:
    """Decode each run of consecutive labelled tokens, checking labels equal the ids there."""
    runs, current = [], []
    for token, label in zip(tokenized.input_ids, tokenized.labels, strict=False):
        if label == IGNORE_INDEX:
            if current:
                runs.append(tokenizer.decode(current))
                current = []
            continue
        assert label == token
        current.append(token)
    if current:
        runs.append(tokenizer.decode(current))
    return runs


@pytest.fixture
def fresh_tokenizer(default_model_path):
    """A tokenizer of our own to change (the session ``tokenizer`` fixture is shared)."""
    from tui_ft.engine.models import load_tokenizer

    return load_tokenizer(default_model_path)


def test_tokenizer_facts_the_tests_rely_on(tokenizer):
    assert tokenizer.eos_token == EOS
    assert default_template(tokenizer) == "chat"


def test_alpaca_renders_exactly_the_seed_template(tokenizer):
    example = Example([user("What is 2 + 2?"), assistant("4")])
    rendered = render(example, tokenizer, "alpaca")
    assert rendered.text == "### Instruction:\nWhat is 2 + 2?\n\n### Response:\n4" + EOS
    assert [rendered.text[a:b] for a, b in rendered.trained_spans] == ["4" + EOS]


def test_alpaca_renders_the_input_after_the_instruction(tokenizer):
    example = Example([user("Summarise."), assistant("Short.")], input="A long text.")
    assert render(example, tokenizer, "alpaca").text == (
        "### Instruction:\nSummarise.\n\n### Input:\nA long text.\n\n### Response:\nShort." + EOS
    )


def test_alpaca_system_and_several_turns(tokenizer):
    example = Example([{"role": "system", "content": "Be brief."}, user("Hi"), assistant("Hello."), user("Bye"), assistant("Bye.")])
    rendered = render(example, tokenizer, "alpaca")
    assert rendered.text == (
        "Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello." + EOS + "### Instruction:\nBye\n\n### Response:\nBye." + EOS
    )
    assert trained_runs(tokenize_example(example, tokenizer, "alpaca"), tokenizer) == ["Hello." + EOS, "Bye." + EOS]


@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_labels_mask_the_prompt_and_train_response_and_eos(tokenizer, template):
    messages = [user("Name the capital of France."), assistant("The capital of France is Paris.")]
    tokenized = tokenize_example(Example(messages), tokenizer, template)
    prompt_ids = encode_text(tokenizer, render_prompt(messages[:1], tokenizer, template))
    # The prompt alone tokenizes to a prefix of the example: the model sees at inference what it saw in training.
    assert tokenized.input_ids[: len(prompt_ids)] == prompt_ids
    assert tokenized.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    response = tokenized.input_ids[len(prompt_ids) :]
    if template == "chat":
        # ChatML closes the turn with "<|im_end|>\n": the trailing newline is not trained.
        assert tokenizer.decode(response[-1:]) == "\n" and tokenized.labels[-1] == IGNORE_INDEX
        response = response[:-1]
    assert tokenized.labels[len(prompt_ids) : len(prompt_ids) + len(response)] == response
    assert tokenizer.decode(response) == "The capital of France is Paris." + EOS
    assert response[-1] == tokenizer.eos_token_id
    assert tokenized.trained_tokens == len(response)
    assert tokenized.truncated is False and tokenized.full_length == len(tokenized.input_ids)


def test_alpaca_prompt_with_input_is_a_prefix(tokenizer):
    example = Example([user("Add them."), assistant("5")], input="2 and 3")
    tokenized = tokenize_example(example, tokenizer, "alpaca")
    prompt_ids = encode_text(tokenizer, "### Instruction:\nAdd them.\n\n### Input:\n2 and 3\n\n### Response:\n")
    assert tokenized.input_ids[: len(prompt_ids)] == prompt_ids
    assert trained_runs(tokenized, tokenizer) == ["5" + EOS]
    assert tokenized.labels.index(tokenized.input_ids[len(prompt_ids)]) == len(prompt_ids)


def test_chat_trains_on_every_assistant_reply_in_a_multi_turn_chat(tokenizer):
    messages = [
        {"role": "system", "content": "You are terse."},
        user("Hi"),
        assistant("Hello!"),
        user("What is 2 + 2?"),
        assistant("It is 4."),
        user("Bye"),
        assistant("See you."),
    ]
    tokenized = tokenize_example(Example(messages), tokenizer, "chat")
    assert trained_runs(tokenized, tokenizer) == ["Hello!" + EOS, "It is 4." + EOS, "See you." + EOS]
    text = tokenizer.decode(tokenized.input_ids)
    assert text.startswith("<|im_start|>system\nYou are terse." + EOS)  # our system turn replaces the default one
    # Each reply's prompt (all turns before it) tokenizes to a prefix with no label on it.
    for end in (1, 3, 5):
        prompt_ids = encode_text(tokenizer, render_prompt(messages[: end + 1], tokenizer, "chat"))
        assert tokenized.input_ids[: len(prompt_ids)] == prompt_ids
        assert tokenized.labels[len(prompt_ids) - 1] == IGNORE_INDEX
        assert tokenized.labels[len(prompt_ids)] == tokenized.input_ids[len(prompt_ids)]


def test_chat_folds_an_alpaca_input_into_the_user_turn(tokenizer):
    rendered = render(Example([user("Summarise."), assistant("Short.")], input="A long text."), tokenizer, "chat")
    assert "<|im_start|>user\nSummarise.\n\nA long text." + EOS in rendered.text
    assert [rendered.text[a:b] for a, b in rendered.trained_spans] == ["Short." + EOS]


@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_train_on_prompt_labels_every_token(tokenizer, template):
    tokenized = tokenize_example(Example([user("Hi"), assistant("Hello.")]), tokenizer, template, train_on_prompt=True)
    assert tokenized.labels == tokenized.input_ids
    assert tokenized.trained_tokens == len(tokenized.input_ids)


def test_truncation_to_max_length(tokenizer):
    example = Example([user("Count to ten."), assistant("One two three four five six seven eight nine ten.")])
    full = tokenize_example(example, tokenizer, "alpaca")
    cut = tokenize_example(example, tokenizer, "alpaca", max_length=12)
    assert len(full.input_ids) > 12
    assert cut.input_ids == full.input_ids[:12] and cut.labels == full.labels[:12]
    assert (cut.full_length, cut.truncated) == (len(full.input_ids), True)
    exact = tokenize_example(example, tokenizer, "alpaca", max_length=len(full.input_ids))
    assert exact.input_ids == full.input_ids and exact.truncated is False


def test_eos_is_appended_for_a_chat_template_without_it(fresh_tokenizer):
    fresh_tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    example = Example([user("Hi"), assistant("Hello.")])
    rendered = render(example, fresh_tokenizer, "chat")
    assert rendered.text == "user: Hi\nassistant: Hello." + EOS + "\n"
    tokenized = tokenize_example(example, fresh_tokenizer, "chat")
    assert trained_runs(tokenized, fresh_tokenizer) == [" Hello." + EOS]
    assert tokenized.input_ids[tokenized.labels.index(fresh_tokenizer.eos_token_id)] == fresh_tokenizer.eos_token_id


def test_template_errors(fresh_tokenizer):
    example = Example([user("Hi"), assistant("Hello.")])
    with pytest.raises(ValueError, match="unknown template 'jinja'"):
        render(example, fresh_tokenizer, "jinja")
    fresh_tokenizer.chat_template = "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ValueError, match="renders turns inconsistently"):
        render(example, fresh_tokenizer, "chat")
    fresh_tokenizer.chat_template = None
    assert default_template(fresh_tokenizer) == "alpaca"
    with pytest.raises(ValueError, match="no chat template"):
        render(example, fresh_tokenizer, "chat")


def test_mask_segments_alternate_and_rebuild_the_text(tokenizer):
    example = Example([user("Hi"), assistant("Hello."), user("Bye"), assistant("Bye.")])
    tokenized = tokenize_example(example, tokenizer, "alpaca")
    segments = mask_segments(tokenized, tokenizer)
    assert "".join(text for text, _ in segments) == tokenizer.decode(tokenized.input_ids)
    assert [trained for _, trained in segments] == [False, True, False, True]
    assert [text for text, trained in segments if trained] == ["Hello." + EOS, "Bye." + EOS]


def test_encode_text_matches_the_tokenizer_defaults(tokenizer):
    text = "### Instruction:\nHi\n\n### Response:\n"
    assert encode_text(tokenizer, text) == tokenizer(text, add_special_tokens=True)["input_ids"]
