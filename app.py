"""tokdist-studio web app: parse flags, build the Gradio UI, launch. Everything else lives in ui/."""

from __future__ import annotations

import argparse
import os

from tokdist_core import DEFAULT_MODEL


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
    limits = parser.add_argument_group("limits for a shared or public server")
    limits.add_argument("--max-job-seconds", type=_positive(float), default=float(os.environ.get("TOKDIST_MAX_JOB_SECONDS", 300)),
                        help="wall-clock limit of one heavy job; runs estimated to take longer are refused and a "
                             "run that reaches it stops at its next step, keeping what finished (default: %(default)s)")
    limits.add_argument("--max-waiting-jobs", type=_positive(int), default=int(os.environ.get("TOKDIST_MAX_WAITING_JOBS", 16)),
                        help="heavy jobs that may wait for the one worker; more are refused with a message "
                             "(default: %(default)s). Stop and the Words tab never wait.")
    limits.add_argument("--export-disk-mb", type=_positive(int), default=int(os.environ.get("TOKDIST_EXPORT_DISK_MB", 2048)),
                        help="disk the full-model exports may use at once (default: %(default)s)")
    return parser.parse_args(argv)


def _positive(kind: type) -> object:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from ui.app import build_app, launch_kwargs  # after argparse: --help stays instant
    from ui.runtime import Runtime

    runtime = Runtime(default_model=args.model, allow_any_model=args.allow_any_model, device=args.device,
                      max_job_seconds=args.max_job_seconds, max_waiting_jobs=args.max_waiting_jobs,
                      max_export_bytes=args.export_disk_mb * 2**20)
    demo = build_app(runtime=runtime)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **launch_kwargs())


if __name__ == "__main__":
    main()
