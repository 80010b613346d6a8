"""Generation on a tiny random Llama: exactness against transformers, stops, sampling, cancelling."""

from __future__ import annotations

import copy

import pytest
import torch

from tui_ft.engine.data.templates import encode_text, render_prompt
from tui_ft.engine.generation import GenerationSettings, generate_reply, stream_reply
from tui_ft.engine.generation.fast_cpu.llama_decoder import LlamaDecoder, supports_lean_decoding
from tui_ft.engine.generation.token_loop import eos_token_ids, generate_token_ids
from tui_ft.engine.models import load_model, resolve_model

QUESTION = [{"role": "user", "content": "Name three colours of the rainbow, please."}]


def with_random_head(model, seed: int = 0):
    """A copy of ``model`` with an untied random output layer.

    The tiny model's tied embeddings make it repeat its last token forever; a random head
    makes varied replies, so comparisons between generators can fail.
    """
    varied = copy.deepcopy(model)
    head = torch.nn.Linear(varied.config.hidden_size, varied.config.vocab_size, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(seed)))
    varied.lm_head = head
    return varied


@pytest.fixture(scope="module")
def repetitive(tiny_model_dir):
    """The tiny model as built (fp32; it repeats itself), and its tokenizer."""
    return load_model(resolve_model(str(tiny_model_dir)))


@pytest.fixture(scope="module")
def tiny(repetitive):
    """A tiny model (fp32) that makes varied replies, and its tokenizer."""
    return with_random_head(repetitive[0]), repetitive[1]


@pytest.fixture(scope="module")
def prompt(tiny):
    return render_prompt(QUESTION, tiny[1], "chat")


def hf_greedy(model, prompt_ids, max_new_tokens, **options) -> list[int]:
    """transformers' own greedy ``generate()``: the reference."""
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():  # an explicit mask: the pad token (<|im_end|>) is in chat prompts
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False, **options)
    return out[0, len(prompt_ids) :].tolist()


def stats_of(model, tokenizer, prompt_text, settings, **options):
    """Run a stream to its end; return its text and its StreamStats."""
    found = []
    text = "".join(stream_reply(model, tokenizer, prompt_text, settings, on_done=found.append, **options))
    return text, found[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_decoder_logits_are_bit_identical_to_transformers(tiny, prompt, dtype):
    model = copy.deepcopy(tiny[0]).to(dtype)
    assert supports_lean_decoding(model)
    ids = torch.tensor([encode_text(tiny[1], prompt)])
    from transformers import DynamicCache

    cache, decoder = DynamicCache(config=model.config), LlamaDecoder(model, ids.shape[1] + 8)
    from tui_ft.engine.models.devices import bf16_is_native

    if dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported() and bf16_is_native("cpu"):
        # oneDNN-laid-out weights; where bf16 is emulated, only the weights probed exact are laid out
        assert decoder.packed >= 1 + 4 * model.config.num_hidden_layers
    step = ids
    with torch.inference_mode():
        for _ in range(6):  # the prompt, then single tokens
            expected = model(input_ids=step, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
            got = decoder.forward(step)
            assert torch.equal(got, expected)
            step = expected.argmax(-1, keepdim=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_equals_transformers_generate(tiny, prompt, dtype):
    model = copy.deepcopy(tiny[0]).to(dtype)
    ids = encode_text(tiny[1], prompt)
    ours = list(generate_token_ids(model, ids, GenerationSettings(max_new_tokens=20), eos_token_ids(model, tiny[1])))
    assert ours == hf_greedy(model, ids, 20)
    assert len(set(ours)) > 5


def test_repetition_penalty_matches_transformers(repetitive, prompt):
    model, tokenizer = repetitive
    ids = encode_text(tokenizer, prompt)
    settings = GenerationSettings(max_new_tokens=16, repetition_penalty=1.5)
    ours = list(generate_token_ids(model, ids, settings, eos_token_ids(model, tokenizer)))
    plain = list(generate_token_ids(model, ids, GenerationSettings(max_new_tokens=16), eos_token_ids(model, tokenizer)))
    assert ours == hf_greedy(model, ids, 16, repetition_penalty=1.5)
    assert ours != plain  # the penalty changed something, so the comparison means something


def test_streaming_equals_whole_reply(tiny, prompt):
    model, tokenizer = tiny
    settings = GenerationSettings(max_new_tokens=24)
    pieces = list(stream_reply(model, tokenizer, prompt, settings))
    assert len(pieces) > 3
    assert "".join(pieces) == generate_reply(model, tokenizer, prompt, settings)


def forced_model(model, token_id: int):
    """A copy of ``model`` whose output layer always picks ``token_id``."""
    forced = copy.deepcopy(model)
    head = torch.nn.Linear(forced.config.hidden_size, forced.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[token_id] = 10.0
    forced.lm_head = head
    return forced


def test_eos_stops_the_reply(tiny, prompt):
    model, tokenizer = tiny
    text, stats = stats_of(forced_model(model, tokenizer.eos_token_id), tokenizer, prompt, GenerationSettings(max_new_tokens=10))
    assert (text, stats.stopped_by, stats.new_tokens) == ("", "eos", 1)


def test_every_eos_id_of_generation_config_stops(tiny, prompt):
    model, tokenizer = tiny
    other = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert other != tokenizer.eos_token_id
    forced = forced_model(model, other)
    _, stats = stats_of(forced, tokenizer, prompt, GenerationSettings(max_new_tokens=5))
    assert stats.stopped_by == "length" and stats.new_tokens == 5  # not an EOS id yet
    forced.generation_config.eos_token_id = [tokenizer.eos_token_id, other]
    _, stats = stats_of(forced, tokenizer, prompt, GenerationSettings(max_new_tokens=5))
    assert stats.stopped_by == "eos" and stats.new_tokens == 1


def test_sampling_with_a_seed_is_reproducible(tiny, prompt):
    model, tokenizer = tiny

    def sample(seed, **options):
        settings = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=seed, **options)
        return generate_reply(model, tokenizer, prompt, settings)

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)
    greedy = generate_reply(model, tokenizer, prompt, GenerationSettings(max_new_tokens=12))
    assert sample(3, top_k=1) == greedy  # top-k 1 leaves only the most likely token
    assert sample(3, top_p=1e-6) == greedy  # so does a tiny nucleus


def test_should_stop_cancels_between_tokens(tiny, prompt):
    model, tokenizer = tiny
    calls = []

    def third_call_stops() -> bool:
        calls.append(1)
        return len(calls) >= 3

    text, stats = stats_of(model, tokenizer, prompt, GenerationSettings(max_new_tokens=50), should_stop=third_call_stops)
    assert (stats.stopped_by, stats.new_tokens) == ("cancelled", 2)
    two = generate_reply(model, tokenizer, prompt, GenerationSettings(max_new_tokens=2))
    assert text == two
    text, stats = stats_of(model, tokenizer, prompt, GenerationSettings(max_new_tokens=50), should_stop=lambda: True)
    assert (text, stats.new_tokens, stats.stopped_by) == ("", 0, "cancelled")


def test_stats_count_tokens(tiny, prompt):
    model, tokenizer = tiny
    _, stats = stats_of(model, tokenizer, prompt, GenerationSettings(max_new_tokens=6))
    assert stats.prompt_tokens == len(encode_text(tokenizer, prompt))
    assert stats.new_tokens <= 6
    assert stats.time_to_first_token > 0 and stats.tokens_per_s > 0


@pytest.mark.parametrize(
    ("values", "word"),
    [
        ({"max_new_tokens": 0}, "max new tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top-p"),
        ({"top_p": 1.5}, "top-p"),
        ({"top_k": -1}, "top-k"),
        ({"repetition_penalty": 0.0}, "repetition penalty"),
    ],
)
def test_bad_settings_are_refused(values, word):
    settings = GenerationSettings(**values)
    assert word in settings.problems()[0]
    with pytest.raises(ValueError, match=word):
        settings.check()
    assert GenerationSettings().problems() == []


@pytest.fixture(scope="module")
def wide(tokenizer):
    """A small bf16 Llama with the widths of real models (multiples of 64), which oneDNN
    computes row by row alike, so several positions can be checked at once."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(torch.bfloat16).eval()


def needs_exact_rows(decoder):
    if not decoder.exact_rows:
        pytest.skip("oneDNN bf16 rows are not computed alike here: several positions at once are not used")


def needs_packing(decoder):
    """Skip where this CPU's oneDNN lays out no bf16 weight (no AVX-512 bf16 or AMX, or an ISA cap):
    the decoder then runs plain ``F.linear`` and the packed paths a test checks do not exist."""
    every = [decoder.lm_head] + [projection for layer in decoder.projections for projection in layer]
    if not all(projection.all_packed for projection in every):
        pytest.skip("oneDNN lays out no bf16 weights on this CPU: nothing packed to check")


def test_a_toy_width_never_checks_several_positions(tiny):
    model = copy.deepcopy(tiny[0]).to(torch.bfloat16)
    decoder = LlamaDecoder(model, 64)
    needs_packing(decoder)  # unpacked, exact_rows is False for that reason alone: nothing would be tested
    assert not decoder.exact_rows  # 32 wide: measured to round differently


def test_several_positions_at_once_are_bit_identical_in_bf16(wide, tokenizer, prompt):
    ids = encode_text(tokenizer, prompt)
    one, many = LlamaDecoder(wide, len(ids) + 8), LlamaDecoder(wide, len(ids) + 8)
    needs_exact_rows(many)
    follow = [11, 2000, 345, 7, 9000]
    with torch.inference_mode():
        one.forward(torch.tensor([ids]))
        singles = torch.cat([one.forward(torch.tensor([[t]])) for t in follow])
        many.forward(torch.tensor([ids]))
        assert torch.equal(many.forward(torch.tensor([follow]), every_position=True), singles)
        many.rewind(len(ids) + 2)  # drop the last three, then redo them one at a time
        redo = torch.cat([many.forward(torch.tensor([[t]])) for t in follow[2:]])
    assert torch.equal(redo, singles[2:])


def test_prompt_lookup_keeps_greedy_output_and_saves_passes(wide, tokenizer, prompt):
    from contextlib import nullcontext

    from tui_ft.engine.generation.fast_cpu.prompt_lookup import greedy_with_lookup, guess_next_tokens

    assert guess_next_tokens([5, 6, 7, 1, 5, 6], 2) == [7, 1]  # what followed "5 6" before
    assert guess_next_tokens([1, 2, 3], 4) == []
    ids = encode_text(tokenizer, prompt)
    varied = with_random_head(wide).to(torch.bfloat16)  # guesses mostly wrong: rewinds
    for model, most_passes in ((wide, 20), (varied, 40)):
        decoder = LlamaDecoder(model, len(ids) + 40)
        needs_exact_rows(decoder)
        counters = {}
        ours = list(greedy_with_lookup(decoder, ids, 40, set(), nullcontext, counters))
        assert ours == hf_greedy(model, ids, 40, eos_token_id=None)
        assert counters["tokens"] == 40 and counters["forward_passes"] <= most_passes


def test_attention_groups_split_where_the_last_partial_register_or_key_block_changes():
    from tui_ft.engine.generation.fast_cpu.llama_decoder import _attention_groups

    # keys 14..22: 14 and 15 end in the register of positions 0-15, 16..22 in the next one
    assert _attention_groups(13, 9, 16) == [(0, 2), (2, 9)]
    assert _attention_groups(16, 9, 16) == [(0, 9)]  # keys 17..25: one register
    # keys 510..514: 510-511 | 512 (a new register, still the first 512-key block) | 513-514
    assert _attention_groups(509, 5, 16) == [(0, 2), (2, 3), (3, 5)]
    assert _attention_groups(40, 1, 16) == [(0, 1)]
    assert _attention_groups(13, 9, 8) == [(0, 2), (2, 9)] and _attention_groups(20, 9, 8) == [(0, 3), (3, 9)]  # AVX2


def test_grouped_attention_is_exact_here_and_the_grouping_rule_matters():
    import torch.nn.functional as F

    from tui_ft.engine.generation.fast_cpu.llama_decoder import _attend_rows, float_lanes, grouped_attention_is_exact

    if float_lanes() is None:  # the probe then refuses grouping by design
        pytest.skip("torch's CPU kernels name no register width here: attention is never grouped")
    assert grouped_attention_is_exact(4, 2, 64, torch.bfloat16)
    # Rows that straddle a register boundary do not come out as alone: the rule is needed.
    generator, differs = torch.Generator().manual_seed(5), 0
    with torch.inference_mode():
        for _ in range(6):
            query = (3 * torch.randn(1, 4, 9, 64, generator=generator)).to(torch.bfloat16)
            keys = torch.randn(1, 2, 308, 64, generator=generator).to(torch.bfloat16)
            values = torch.randn(1, 2, 308, 64, generator=generator).to(torch.bfloat16)
            together = _attend_rows(query, keys, values, 0.125, True)  # 300..308 keys: registers end at 304
            for row in range(9):
                alone = F.scaled_dot_product_attention(query[:, :, row : row + 1], keys[:, :, : 300 + row],
                                                       values[:, :, : 300 + row], scale=0.125, enable_gqa=True)
                differs += not torch.equal(together[:, :, row : row + 1], alone)
    assert differs > 0


def test_several_positions_match_single_steps_at_every_offset(wide, tokenizer, prompt):
    """Nine positions at once against one at a time, for prompts ending at each offset of a
    16-key register (and across torch's 512-key attention block)."""
    ids = encode_text(tokenizer, prompt)
    base = (ids * 40)[:490]
    follow = [11, 2000, 345, 7, 9000, 42, 1234, 5, 77]
    for length in list(range(len(ids), len(ids) + 17)) + [500, 505, 510]:
        one, many = LlamaDecoder(wide, length + 9), LlamaDecoder(wide, length + 9)
        needs_exact_rows(many)
        with torch.inference_mode():
            one.forward(torch.tensor([base[:length]]))
            many.forward(torch.tensor([base[:length]]))
            singles = torch.cat([one.forward(torch.tensor([[t]])) for t in follow])
            assert torch.equal(many.forward(torch.tensor([follow]), every_position=True), singles), length


def test_projections_reading_one_input_share_one_oneDNN_call(wide):
    decoder = LlamaDecoder(wide, 32)
    needs_exact_rows(decoder)
    qkv, o, gate_up, down = decoder.projections[0]
    assert len(qkv.packed) == 1 and qkv.shapes == [(128 + 64 + 64, 128)]
    assert len(gate_up.packed) == 1 and gate_up.shapes == [(2 * 256, 128)]
    assert decoder.packed == 1 + 4 * wide.config.num_hidden_layers


def test_an_inexact_stacking_falls_back_to_one_weight_each(wide, tokenizer, prompt, monkeypatch):
    from tui_ft.engine.generation.fast_cpu import llama_decoder, onednn_weights

    ids = encode_text(tokenizer, prompt)
    expected = LlamaDecoder(wide, len(ids) + 1)
    needs_packing(expected)
    monkeypatch.setattr(llama_decoder, "stacking_is_exact", lambda modules, stacked: False)
    decoder = LlamaDecoder(wide, len(ids) + 1)
    qkv = decoder.projections[0][0]
    assert qkv.stacked is None and all(packed is not None for packed in qkv.single)
    stacked_keys = [key for key in onednn_weights._PACKED if len(key) > 1]
    assert stacked_keys == []  # the stacked copy found inexact is not kept beside the single ones
    with torch.inference_mode():
        expected.forward(torch.tensor([ids]))
        decoder.forward(torch.tensor([ids]))
        assert torch.equal(decoder.forward(torch.tensor([[11]])), expected.forward(torch.tensor([[11]])))
