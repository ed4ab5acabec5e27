"""``python -m chaos [--short] [--calls N] [--json-out FILE] [--keep] [--seed N]``.

Runs a chaos campaign (see :mod:`chaos.runner`), prints progress lines while it runs, then
the verdict table. Exits 0 when every verdict line passes, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaos.runner import ChaosConfig, run_chaos


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m chaos",
        description="A chaos campaign against the Exotel simulator: SIGKILLed workers, a "
        "Redis restart, a receiver restart, injected Exotel faults; then a verdict against "
        "the simulator's ground truth.",
    )
    p.add_argument("--short", action="store_true", help="a few hundred calls (about 2 minutes)")
    p.add_argument("--calls", type=int, help="number of calls (default 2000, --short 300)")
    p.add_argument("--workers", type=int, help="worker processes (default 3)")
    p.add_argument("--kill-every", type=float, help="seconds between two SIGKILLs")
    p.add_argument("--seed", type=int, help="seed of the simulator and of the chaos")
    p.add_argument("--json-out", type=Path, help="write the verdict and figures as JSON here")
    p.add_argument("--workdir", type=Path, help="run in this directory (kept afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the logs and AOF of a passing run")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        name: value
        for name, value in (
            ("calls", args.calls),
            ("workers", args.workers),
            ("kill_every", args.kill_every),
            ("seed", args.seed),
            ("workdir", args.workdir),
        )
        if value is not None
    }
    if args.keep:
        overrides["keep"] = True
    if overrides.get("calls", 1) < 1 or overrides.get("workers", 1) < 1:
        print("chaos: --calls and --workers must be at least 1", file=sys.stderr)
        return 2
    cfg = ChaosConfig.short(**overrides) if args.short else ChaosConfig(**overrides)

    def out(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    report = run_chaos(cfg, out)
    print()
    print(report.render(), flush=True)
    if args.json_out is not None:
        report.write_json(args.json_out)
        print(f"figures written to {args.json_out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
