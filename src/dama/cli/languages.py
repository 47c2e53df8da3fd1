"""``dama languages``: Whisper's language codes."""

from __future__ import annotations

from dama.cli.common import add_json_arg, write_json


def cmd_languages(args) -> dict:
    from dama.languages import WHISPER_LANGUAGES

    for code, name in sorted(WHISPER_LANGUAGES.items()):
        print(f"{code}\t{name}")
    write_json(args.json, {"n": len(WHISPER_LANGUAGES), "languages": WHISPER_LANGUAGES})
    return WHISPER_LANGUAGES


def register(sub) -> None:
    p = sub.add_parser("languages", help="list Whisper's language codes")
    add_json_arg(p)
    p.set_defaults(func=cmd_languages)
