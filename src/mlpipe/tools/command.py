"""`mlpipe`: one command for the tools around the pipeline, and what the Makefile calls.

    mlpipe monitor              # the drift verdict; exit 1 when retraining is recommended
    mlpipe init --data t.csv --target y
    mlpipe smoke --stage prod   # after `make serve STAGE=prod`: exit 1 when a check fails
    mlpipe <command> --help

Each command is the `main(argv)` of its module, with that module's own options: this file only
dispatches, and imports a command's module when that command runs (`mlpipe monitor` must not
pay for LightGBM's or DVC's import). Every command exits with a status of
`mlpipe.errors.EXIT_MEANINGS`, which `mlpipe --help` lists.
"""

from __future__ import annotations

import importlib
import sys

from mlpipe.errors import EXIT_INTERRUPTED, EXIT_MEANINGS, EXIT_OK, EXIT_USAGE

# command -> (module whose main(argv) runs it, one line for `mlpipe --help`)
COMMANDS = {
    "init": ("mlpipe.tools.init", "profile your table and point params.yaml at it"),
    "repro": ("mlpipe.tools.repro", "dvc repro; a failing stage's last good outputs are put back"),
    "metrics": ("mlpipe.tools.summary", "the headline metrics and the drift verdict (every metric: dvc metrics show)"),
    "monitor": ("mlpipe.monitor.retrain", "print the drift verdict; exit 1 when retraining is recommended"),
    "review": ("mlpipe.tools.review", "write the review report against a revision; exit 1 on a guarded regression"),
    "sweep": ("mlpipe.tools.experiments", "run a grid of experiments through DVC's queue; exit 1 when one fails"),
    "plots": ("mlpipe.tools.plots_page", "write every plot on one page that opens offline"),
    "serve": ("mlpipe.tools.serve", "the prediction service on the model dvc.yaml names"),
    "replay": ("mlpipe.tools.replay", "send rows through the running service, to fill its prediction log"),
    "smoke": ("mlpipe.tools.smoke", "check a running service: health, the release it serves, one prediction; exit 1 on a failed check"),
}

EXIT_STATUSES = "\n".join(
    [
        "exit status:",
        *(f"  {status:<3}  {meaning}" for status, meaning in EXIT_MEANINGS.items()),
        "(make exits 2 whenever a command fails: a CI gate calls .venv/bin/mlpipe itself)",
    ]
)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: mlpipe <command> [options]   (mlpipe <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join([*lines, "", EXIT_STATUSES])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return EXIT_OK if argv else EXIT_USAGE
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: mlpipe: no command '{name}': use one of {', '.join(COMMANDS)} (mlpipe --help)", file=sys.stderr)
        return EXIT_USAGE
    # The command's argparse names itself after argv[0]: `mlpipe init --help` says `usage: mlpipe init`.
    sys.argv[0] = f"mlpipe {name}"
    try:
        return importlib.import_module(COMMANDS[name][0]).main(rest)
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
