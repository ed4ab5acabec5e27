"""``callq``: one command for every part of the call queue.

    callq run                      the whole local stack and one campaign (``make run``)
    callq up                       the local stack, no campaign, until Ctrl-C (``make up``)
    callq worker [CELERY ARGS]     celery -A worker worker -Q calls --pool threads ...
    callq callbacks [ARGS]         python -m callbacks ...
    callq api [ARGS]               python -m callq.api ... (the HTTP API)
    callq simulator [ARGS]         python -m simulator ...
    callq flower [FLOWER ARGS]     celery -A worker flower ...
    callq enqueue FILE --campaign ID | status ID | report ID | cancel ID | events replay ...
                                   the same as ``python -m producer ...``

Settings come from the environment and ``.env`` (see ``.env.example``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.util import find_spec

__all__ = ["build_parser", "main"]

#: Delegated to ``producer.cli.main`` with the same arguments.
PRODUCER_COMMANDS = (
    "enqueue",
    "status",
    "report",
    "cancel",
    "pause",
    "resume",
    "set",
    "events",
)


def _worker_argv(rest: Sequence[str]) -> list[str]:
    argv = ["-m", "celery", "-A", "worker", "worker", "-Q", "calls"]
    if not any(a == "-P" or a.startswith("--pool") for a in rest):
        argv += ["--pool", "threads"]
    return [*argv, *rest]


def _flower_argv(rest: Sequence[str]) -> list[str]:
    return ["-m", "celery", "-A", "worker", "flower", *rest]


def _module_argv(module: str) -> Callable[[Sequence[str]], list[str]]:
    def build(rest: Sequence[str]) -> list[str]:
        return ["-m", module, *rest]

    return build


#: Commands that become another program (``exec``: signals reach it directly).
EXEC_COMMANDS: dict[str, tuple[Callable[[Sequence[str]], list[str]], str]] = {
    "worker": (
        _worker_argv,
        "Run a Celery worker on the calls queue: `celery -A worker worker -Q calls "
        "--pool threads ARGS` (--pool threads unless ARGS name a pool). Other arguments "
        "pass through to celery, e.g. `callq worker -c 32 --loglevel INFO`; "
        "`callq worker -- --help` shows celery's own help.",
    ),
    "flower": (
        _flower_argv,
        "Run Flower, the Celery monitor: `celery -A worker flower ARGS`. Give it basic auth, "
        "e.g. `callq flower --port 5555 --basic-auth=user:password` or FLOWER_BASIC_AUTH. "
        "`callq flower -- --help` shows Flower's own help.",
    ),
    "callbacks": (
        _module_argv("callbacks"),
        "Run the StatusCallback receiver: `python -m callbacks ARGS` (--host, --port, ...). "
        "Needs REDIS_URL and CALLBACK_TOKEN. `callq callbacks -- --help` shows its options.",
    ),
    "api": (
        _module_argv("callq.api"),
        "Run the HTTP API for campaigns: `python -m callq.api ARGS` (--host, --port, ...). "
        "Needs REDIS_URL and API_TOKEN. `callq api -- --help` shows its options.",
    ),
    "simulator": (
        _module_argv("simulator"),
        "Run the Exotel simulator in the foreground: `python -m simulator ARGS` (--port, "
        "--time-scale, --p-500, ...). `callq simulator -- --help` shows its options.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callq",
        description="Outbound call queue for Exotel: run the stack, a demo campaign, or one "
        "part of it.",
        epilog="`callq COMMAND --help` describes each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser(
        "run",
        help="the whole local stack and one campaign, with live progress and a summary",
        add_help=False,
    )
    sub.add_parser("up", help="the local stack without a campaign, until Ctrl-C", add_help=False)
    for name, (_, text) in EXEC_COMMANDS.items():
        p = sub.add_parser(name, help=text.split(":")[0], description=text)
        p.add_argument("args", nargs=argparse.REMAINDER, help="passed through")
    helps = {
        "enqueue": "validate a CSV file and enqueue its calls (python -m producer enqueue)",
        "status": "counts per state and per call_status of a campaign",
        "report": "one row per call of a campaign (csv or jsonl)",
        "cancel": "cancel every call of a campaign not yet dialled",
        "pause": "stop dialling a campaign (its calls wait, parked)",
        "resume": "dial a paused campaign again",
        "set": "change a campaign's controls (window, end_at, redials ...)",
        "events": "events sent onward to EVENTS_URL: replay --since, dead, status",
    }
    for name in PRODUCER_COMMANDS:
        sub.add_parser(name, help=helps[name], add_help=False)
    return parser


def _exec(command: str, rest: list[str]) -> int:
    build, _ = EXEC_COMMANDS[command]
    module = {"worker": "celery", "flower": "celery", "api": "callq.api"}.get(command, command)
    if find_spec(f"{module}.__main__") is None:
        print(f"callq {command}: python -m {module} is not installed here", file=sys.stderr)
        return 1
    argv = [sys.executable, *build(rest)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and argv
    return 0  # pragma: no cover - execv does not return


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    rest = args[1:]
    if command in PRODUCER_COMMANDS:
        from callq.intake.cli import main as producer_main

        return producer_main(args, prog="callq")
    if command in ("run", "up"):
        from devstack import demo

        if command == "run":
            return demo.main(rest, prog="callq run")
        return demo.up_main(rest, prog="callq up")
    if command in EXEC_COMMANDS:
        if rest[:1] in (["-h"], ["--help"]):
            build_parser().parse_args([command, "--help"])  # prints the help and exits
        if rest[:1] == ["--"]:
            rest = rest[1:]
        return _exec(command, rest)
    build_parser().parse_args(args)  # --help, or an error naming the valid commands
    return 2


if __name__ == "__main__":
    sys.exit(main())
