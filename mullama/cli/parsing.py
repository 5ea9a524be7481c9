"""How the command line is read, the same way for every verb.

- The client options (``--host URL``, ``--api-key KEY``) are accepted before the verb, as always, and
  after it (``mullama ps --host URL``), on every verb that talks to a server.
- A flag a verb does not know gets that verb's usage, not the top-level one, and the nearest flag it
  does know (``--tread`` -> did you mean ``--threads``?).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence

#: The verbs that are HTTP clients of a running server.
CLIENT_VERBS = ("ps", "stop", "list", "show", "run", "create", "rm")

HOST_HELP = "server for the client verbs (default: $MULLAMA_HOST or http://127.0.0.1:8080)"
KEY_HELP = "API key sent to the server (default: $MULLAMA_API_KEY)"


def add_client_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--host`` and ``--api-key``. After the verb they default to nothing at all (SUPPRESS), so a
    value given before the verb is kept when the verb does not repeat it."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--host", default=default, metavar="URL", help=HOST_HELP)
    parser.add_argument("--api-key", dest="client_api_key", default=default, metavar="KEY", help=KEY_HELP)


def verb_parser(sub: argparse._SubParsersAction, verb: str | None) -> argparse.ArgumentParser | None:
    return sub.choices.get(verb) if verb else None


def nearest_flag(unknown: str, parser: argparse.ArgumentParser) -> str | None:
    flags = [o for action in parser._actions for o in action.option_strings]
    close = difflib.get_close_matches(unknown.split("=", 1)[0], flags, n=1, cutoff=0.6)
    return close[0] if close else None


def parse(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction,
          argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that leftovers are reported by the verb that was given them."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        target = verb_parser(sub, getattr(args, "command", None)) or parser
        message = "unrecognized arguments: " + " ".join(extras)
        for extra in extras:
            if extra.startswith("-") and (guess := nearest_flag(extra, target)):
                message += f" (did you mean {guess}?)"
                break
        target.error(message)  # prints the verb's usage and exits 2
    return args
