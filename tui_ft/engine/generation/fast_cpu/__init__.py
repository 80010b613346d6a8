"""The lean decoder for Llama-architecture models on CPUs.

- :mod:`.llama_decoder` — the same arithmetic as transformers' forward with less Python per token;
- :mod:`.onednn_weights` — bf16 weights laid out once for oneDNN, and the checks that keep results exact;
- :mod:`.prompt_lookup` — prompt-lookup decoding: guesses copied from the prompt, checked in one pass.
"""
