"""The ``dama`` command: a thin layer over the Python API.

Conventions other tools rely on: ``dama model fetch NAME`` prints the model directory
as its last line; every command takes ``--json PATH`` and writes top-level numeric keys
there; corpora are found through ``--data-root`` or ``$DAMA_DATA``.

One module per command group, each with its parser (``register``) beside its handler:
``model``, ``transcribe``, ``eval``, ``train``, ``export``, ``push``, ``data``, ``cache``, ``bench``,
``probe`` (probe and plan), ``languages`` and ``serve`` (serve and lid); ``common`` holds what they share (--json, the
decoding flags, loading a model, flags derived from dataclass fields). This module builds the
parser, checks every output location before work starts, and turns expected failures into
one-line errors (exit 2). No command module imports torch before its command runs.
"""

from __future__ import annotations

import argparse
import sys

from dama.cli import bench, cache, data, estimate, export, languages, model, probe, push, serve, train, transcribe
from dama.cli import eval as eval_command
from dama.errors import DamaError

COMMAND_MODULES = (model, transcribe, eval_command, train, estimate, export, push, data, cache, languages, probe,
                   bench, serve)


def build_parser() -> argparse.ArgumentParser:
    from dama import __version__

    ap = argparse.ArgumentParser(prog="dama", description=__doc__.split("\n")[0])
    ap.add_argument("--version", action="version", version=f"dama {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in COMMAND_MODULES:
        mod.register(sub)
    return ap


def check_outputs(args) -> None:
    """Every location a command will write, checked before minutes of work are spent: --json, --hyps,
    and --out as the folder or file its parser declares (``out_kind``)."""
    from dama.outputs import check_writable, check_writable_dir

    for name, what in (("json", "--json"), ("hyps", "--hyps")):
        if getattr(args, name, None):
            check_writable(getattr(args, name), what)
    out, kind = getattr(args, "out", None), getattr(args, "out_kind", None)
    if out and kind == "dir":
        check_writable_dir(out, "--out")
    elif out and kind == "file":
        check_writable(out, "--out")


def expected_error_message(e: BaseException) -> str | None:
    """The one-line message for a failure users can act on; None for a bug (keep the traceback)."""
    from dama.outputs import describe_os_error

    if isinstance(e, DamaError):
        return str(e)
    if isinstance(e, OSError):
        return describe_os_error(e)
    if isinstance(e, UnicodeDecodeError):
        return (f"a file is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8. "
                "(`dama data check` names the file for data.)")
    if isinstance(e, MemoryError):
        return "out of memory: lower --batch-size, use --low-memory, or use a machine with more RAM"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])
    try:
        check_outputs(args)
        args.func(args)
    except KeyboardInterrupt:
        print("dama: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        msg = expected_error_message(e)
        if msg is None:
            raise
        print(f"dama: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
