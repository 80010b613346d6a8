"""``tui-ft export NAME --merged OUT_DIR | --gguf OUT.gguf | --ollama DIR [--quant f16|bf16|q8_0]``: a run's model, LoRA merged."""

from __future__ import annotations

ORDER = 32
QUANTS = ("f16", "bf16", "q8_0")  # as engine.training.gguf_export.QUANTS (not imported: it would load the engine)


def add_parser(commands) -> None:
    parser = commands.add_parser("export", help="write a run's model (LoRA merged): a Hugging Face folder, GGUF or Ollama")
    parser.add_argument("name", metavar="NAME", help="the run")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--merged", metavar="OUT_DIR", help="a Hugging Face model folder to create (must be new or empty)")
    target.add_argument("--gguf", metavar="OUT.gguf",
                        help="one GGUF file for llama.cpp (Llama-architecture models; never replaces a file)")
    target.add_argument("--ollama", metavar="DIR",
                        help="a folder (new or empty) with model.gguf and a Modelfile for `ollama create NAME -f DIR/Modelfile`")
    parser.add_argument("--quant", choices=QUANTS, default="f16",
                        help="how --gguf and --ollama store the weight matrices (default f16; norms stay f32)")
    parser.add_argument("--from-checkpoint", action="store_true", help="export the latest checkpoint, not the final weights")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run the base model's own Python code (auto_map); run.json saying so is not enough")
    parser.set_defaults(handler=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from rich.console import Console

    from tui_ft.cli import UserError
    from tui_ft.engine.models import fetch_run_weights
    from tui_ft.engine.runs import RunError, read_run_config, run_dir_for
    from tui_ft.engine.training.export import check_gguf_export, export_gguf, export_merged, export_ollama

    if args.merged is not None and args.quant != "f16":
        raise UserError("--quant applies to --gguf and --ollama, not --merged")
    options = {"from_checkpoint": args.from_checkpoint, "trust_remote_code": args.trust_remote_code}
    try:
        run_dir = run_dir_for(args.home, args.name)
        if args.merged is None:  # a model GGUF cannot hold is refused before any download
            check_gguf_export(run_dir, args.quant, args.from_checkpoint)
        # A Hub base model's missing weights first, with their own bar (not under the spinner).
        if not (run_dir / "model").is_dir() or args.from_checkpoint:
            fetch_run_weights(read_run_config(run_dir))
        with Console(stderr=True).status(f"exporting {args.name}"):
            if args.gguf is not None:
                out = export_gguf(run_dir, Path(args.gguf), quant=args.quant, **options)
            elif args.ollama is not None:
                out = export_ollama(run_dir, Path(args.ollama), quant=args.quant, **options)
            else:
                out = export_merged(run_dir, Path(args.merged), **options)
    except RunError as error:
        raise UserError(str(error)) from None
    print(out)
    if args.ollama is not None:
        print(f"load it into Ollama: ollama create {args.name} -f {out / 'Modelfile'}", file=sys.stderr)
    return 0
