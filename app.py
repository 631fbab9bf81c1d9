"""tokdist-studio web app: parse flags, build the Gradio UI, launch. Everything else lives in ui/."""

from __future__ import annotations

import argparse
import os

from tokdist_core.models import DEFAULT_MODEL


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Token Distillation studio (Gradio app).")
    parser.add_argument("--model", default=os.environ.get("TOKDIST_MODEL", DEFAULT_MODEL),
                        help="bundled model name, local folder or hub id (default: %(default)s; env TOKDIST_MODEL)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    parser.add_argument("--allow-any-model", action="store_true",
                        help="let users load any hub id or local folder from the model picker")
    parser.add_argument("--device", default=os.environ.get("TOKDIST_DEVICE", "auto"), choices=["auto", "cpu", "cuda"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from ui.app import build_app, launch_kwargs  # after argparse: --help stays instant

    demo = build_app(model=args.model, allow_any_model=args.allow_any_model, device=args.device)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_kwargs())


if __name__ == "__main__":
    main()
