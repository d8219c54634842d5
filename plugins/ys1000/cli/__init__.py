"""``ys1000`` command line: works without Airflow, so an operator can act while it is down.

Each sub-command group lives in its own module with a ``register(subparsers)`` function.
Exit codes: 0 success, 1 failure, 2 bad usage, 3 partial success, 4 backup committed but marked
suspicious by the anomaly guard (``ys1000 backup``; the reasons are printed).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ys1000.cli import airflow_setup, approvals as approvals_cmd, backup_restore as backup_restore_cmd
from ys1000.cli import collect_logs as collect_logs_cmd, self_backup as self_backup_cmd
from ys1000.cli import connection_check as connection_check_cmd, drill as drill_cmd
from ys1000.cli.common import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_SUSPICIOUS = 0, 1, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ys1000",
        description=__doc__.splitlines()[0],
        epilog="exit codes: 0 success, 1 failure, 2 bad usage, 3 partial success (e.g. a PVC's data missing), "
        "4 backup committed but suspicious (anomaly guard; reasons printed)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backup_restore_cmd.register(sub)
    drill_cmd.register(sub)
    approvals_cmd.register(sub)
    airflow_setup.register(sub)
    connection_check_cmd.register(sub)
    self_backup_cmd.register(sub)  # self-restore, self-backups
    collect_logs_cmd.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args) or EXIT_OK
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except UsageError as exc:
        print(f"ys1000: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # one readable line for the operator; -v shows the traceback
        if args.verbose:
            raise
        print(f"ys1000: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
