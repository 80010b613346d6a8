"""An Ollama ``Modelfile`` for an exported GGUF: its prompt format in Ollama's Go-template syntax.

Ollama does not run a model's Jinja chat template; the Modelfile's ``TEMPLATE`` must say the same
thing in Go's ``text/template``. Two formats are written: ChatML (``<|im_start|>role\\n...<|im_end|>``,
SmolLM2's and many others'), recognised by rendering the model's own template, and the seed's
alpaca template a run may have trained with. Anything else is refused rather than guessed.
"""

from __future__ import annotations

from tui_ft.engine.data.templates import ALPACA_END_MARKER
from tui_ft.engine.runs import RunError

GGUF_NAME = "model.gguf"  # the weights beside the Modelfile (FROM is relative to the Modelfile)

# Ollama passes the conversation as .Messages (newer servers) or as .System/.Prompt (older ones
# and templates without .Messages): each template below handles both, like Ollama's own ChatML ones.
CHATML_TEMPLATE = """{{- if .Messages }}
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""

# The alpaca template of engine.data.templates.render_alpaca: a system text and a blank line, each
# user turn as an instruction, each reply followed by the EOS token.
ALPACA_TEMPLATE = """{{- if .Messages }}
{{- range .Messages }}
{{- if eq .Role "system" }}{{ .Content }}

{{ else if eq .Role "user" }}### Instruction:
{{ .Content }}

### Response:
{{ else }}{{ .Content }}EOS{{ end }}
{{- end }}
{{- else }}
{{- if .System }}{{ .System }}

{{ end }}### Instruction:
{{ .Prompt }}

### Response:
{{ end }}{{ .Response }}{{ if .Response }}EOS{{ end }}"""


def chatml_default_system(tokenizer) -> str | None:
    """The system prompt the model's chat template adds by itself ("" when none), or ``None`` when it is not ChatML."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        return None
    turns = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
             {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}]
    chatml = ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
              "<|im_start|>user\nV<|im_end|>\n<|im_start|>assistant\n")
    try:
        if tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) != chatml:
            return None
        alone = tokenizer.apply_chat_template(turns[1:2], tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that raises on these turns (jinja errors are of many types) is not ChatML
        return None
    ending = "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    if alone == ending:
        return ""
    head = alone.removesuffix(ending)
    if alone.endswith(ending) and head.startswith("<|im_start|>system\n") and head.endswith("<|im_end|>\n"):
        return head.removeprefix("<|im_start|>system\n").removesuffix("<|im_end|>\n")
    return None


def modelfile_text(tokenizer, template: str | None, name: str) -> str:
    """The Modelfile for run ``name`` trained with ``template`` (``chat``, ``alpaca``, or ``None``: the model's own).

    Raises:
        RunError: The prompt format has no Ollama template here (one line, naming the run).
    """
    eos = tokenizer.eos_token or ""
    system = ""
    if template == "alpaca":
        body, stops = ALPACA_TEMPLATE.replace("EOS", eos), [ALPACA_END_MARKER, eos]
    else:
        system = chatml_default_system(tokenizer)
        if system is None:
            raise RunError(f"{name}: an Ollama Modelfile is written for ChatML chat templates and the alpaca "
                           "template; this model's chat template is neither (export --gguf and write its TEMPLATE)")
        body, stops = CHATML_TEMPLATE, ["<|im_start|>", "<|im_end|>", eos]
    if '"""' in body or '"""' in system:
        raise RunError(f'{name}: the prompt format holds """, which a Modelfile cannot quote')
    lines = [f"# tui-ft export {name} --ollama: load with `ollama create NAME -f Modelfile`",
             f"FROM ./{GGUF_NAME}", f'TEMPLATE """{body}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')  # Ollama adds it when a conversation has none, as the template did
    lines += [f"PARAMETER stop {quoted(stop)}" for stop in dict.fromkeys(stop for stop in stops if stop)]
    return "\n".join(lines) + "\n"


def quoted(text: str) -> str:
    """A Modelfile string: double quotes, with backslashes and quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
