"""The ``cwlhandler`` command line (also ``python -m cwlhandler``).

* ``cwlhandler demo``: log a realistic workload through ``dictConfig``, the
  handler and ``JsonFormatter`` into an embedded emulator (or ``--endpoint-url``),
  read it back and print what arrived (``demo.py``).
* ``cwlhandler ship --group G --stream S [FILE...]``: ship lines from stdin or
  files, one event per line, like ``tee`` into CloudWatch Logs (``ship.py``).
* ``cwlhandler tail --group G [--stream S] [--since 10m] [--follow]``: print events (``tail.py``).

``parser.py`` holds the arguments, exit statuses and one-line error messages;
``aws.py`` the session, client and readers, among them ``read_stream``, which is
exported here as the one reader of a stream's events (the examples and the tests
use it too).  Errors are reported as one line on stderr with a non-zero exit
status, never a traceback: 1 for failures, 2 for bad arguments or settings.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from . import demo, ship, tail
from .aws import read_stream
from .parser import EXIT_FAILURE, EXIT_INTERRUPTED, CliError, build_parser, explain, fail, silence_stdout

__all__ = ["main", "read_stream"]
COMMANDS = {"demo": demo.run, "ship": ship.run, "tail": tail.run}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command ``argv`` names (default: ``sys.argv[1:]``); returns the exit status."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except Exception:
                pass
    # No "No handlers could be found"/lastResort output from libraries: errors are ours to report.
    logging.getLogger().addHandler(logging.NullHandler())
    parser = build_parser(COMMANDS)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CliError as exc:
        return fail(args.command, exc.message, exc.status)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_FAILURE
    except Exception as exc:  # one line, never a traceback
        message, status = explain(exc, getattr(args, "group", None), getattr(args, "stream", None))
        return fail(args.command, message, status)
