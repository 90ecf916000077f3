"""The ``diffcrit`` command line.

Every subcommand that produces numbers accepts ``--json`` and then prints exactly
one JSON object to stdout (progress and messages go to stderr), so scripts can
rely on ``diffcrit <cmd> --json | jq``. Errors print ``diffcrit: error: ...`` to
stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from diffcrit import __version__

#: name -> (help, add_arguments, run); run(args) returns a JSON-able dict.
_COMMANDS: dict[str, tuple[str, Callable, Callable]] = {}


def command(name: str, help: str):
    """Register a subcommand: decorates ``run(args) -> dict`` given ``add_arguments``."""

    def register(add_arguments: Callable):
        def wrap(run: Callable):
            _COMMANDS[name] = (help, add_arguments, run)
            return run

        return wrap

    return register


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", default="digits", metavar="SPEC",
        help="dataset spec: digits | idx:PATH[?labels=PATH] | npy:PATH | npz:PATH[?key=K] | "
             "synthetic:grf?size=32&corr=3&n=512&seed=0 | synthetic:binary?... | "
             "synthetic:stripes?... (default: digits)",
    )
    parser.add_argument(
        "--standardize", default="global", choices=["global", "per-pixel", "none"],
        help="standardization recorded on the dataset (default: global: one scalar "
             "mean and std, which keeps stationary data stationary)",
    )


def _json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object to stdout instead of text")


# ---------------------------------------------------------------- data
def _add_data(parser):
    _data_arguments(parser)
    _json_argument(parser)


@command("data", "summarise a dataset (shape, classes, pixel statistics, provenance)")(_add_data)
def _run_data(args) -> dict:
    from diffcrit.data import load_dataset

    dataset = load_dataset(args.data, standardize=args.standardize)
    return {"command": "data", "spec": args.data, **dataset.summary()}


# ---------------------------------------------------------------- schedule
def _add_schedule(parser):
    parser.add_argument("--schedule", default="vp-linear", metavar="SPEC",
                        help="schedule spec, e.g. ve, edm:rho=7, vp-linear, ddpm, vp-cosine, ou "
                             "(default: vp-linear); --schedule list shows them all")
    parser.add_argument("--s", type=float, nargs="+", metavar="S",
                        help="VE-equivalent noise levels to convert (default: a log-spaced set "
                             "over the schedule's range)")
    parser.add_argument("--n", type=int, default=9, help="number of default noise levels (default 9)")
    _json_argument(parser)


@command("schedule", "convert noise levels between s, log-SNR, alpha_bar, t and step")(_add_schedule)
def _run_schedule(args) -> dict:
    import numpy as np

    from diffcrit.theory.schedules import get_schedule, list_schedules, schedule_table

    if args.schedule == "list":
        return {"command": "schedule", "schedules": list_schedules()}
    schedule = get_schedule(args.schedule)
    if args.s is not None:
        s_values = np.asarray(args.s, dtype=float)
    else:
        if args.n < 2:
            raise ValueError(f"--n must be >= 2, got {args.n}")
        s_values = np.geomspace(schedule.s_min, schedule.s_max, args.n)[::-1]
    return {
        "command": "schedule",
        "schedule": schedule.to_dict(),
        "rows": schedule_table(schedule, s_values),
    }


# ---------------------------------------------------------------- report
def _add_report(parser):
    _data_arguments(parser)
    parser.add_argument("--out", default="runs/report", metavar="DIR",
                        help="run folder to write (replaced atomically; default runs/report)")
    parser.add_argument("--window", type=int, default=5,
                        help="patch window side P for the patch-covariance figure (odd; default 5)")
    parser.add_argument("--schedule", default="vp-linear", metavar="SPEC",
                        help="schedule whose clock the report reads in (default vp-linear)")
    parser.add_argument("--no-simulation", action="store_true",
                        help="skip the sections that simulate ensembles or train networks (E1, E2); statistics only")
    _json_argument(parser)


@command("report", "the main job: analyse a dataset and write a run folder with report.md")(_add_report)
def _run_report(args) -> dict:
    from diffcrit.validation.report import write_report

    return write_report(
        data=args.data, out=args.out, window=args.window, schedule=args.schedule,
        standardize=args.standardize, progress=not args.json, simulate=not args.no_simulation,
    )


# ---------------------------------------------------------------- bench
def _add_bench(parser):
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (seconds); checks the machinery, timings not meaningful")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch-CPU implementation")
    parser.add_argument("--seed", type=int, default=0, help="seed for the benchmark fields (default 0)")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON to FILE (atomically)")
    _json_argument(parser)


@command("bench", "time the patch denoiser (Numba, numpy twin, fast numpy, torch-CPU) and the GL step")(_add_bench)
def _run_bench(args) -> dict:
    from diffcrit.numerics.bench import run_benchmark

    result = {"command": "bench", **run_benchmark(quick=args.quick, include_torch=not args.no_torch,
                                                  rng=args.seed)}
    if args.out:
        from diffcrit.validation.runio import write_json_atomic

        write_json_atomic(args.out, result)
    return result


# ---------------------------------------------------------------- text output
def _print_text(result: dict) -> None:
    from diffcrit.validation.runio import to_jsonable

    def show(value, indent=0):
        pad = "  " * indent
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, (dict, list)) and item and not _is_flat(item):
                    print(f"{pad}{key}:")
                    show(item, indent + 1)
                else:
                    print(f"{pad}{key}: {item}")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    print(pad + ", ".join(f"{k}={_short(v)}" for k, v in item.items()))
                else:
                    print(f"{pad}- {item}")

    show(to_jsonable(result))


def _is_flat(value) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


#: Modules that define further subcommands with :func:`command` when imported.
COMMAND_MODULES: tuple[str, ...] = ("diffcrit.validation.cli_predict", "diffcrit.validation.cli_simulate",
                                     "diffcrit.validation.cli_probe", "diffcrit.validation.cli_guide")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="diffcrit",
        description="Pattern formation in generative diffusion models as a phase transition: "
                    "predict critical noise levels, simulate analytic denoisers, measure them.",
    )
    parser.add_argument("--version", action="version", version=f"diffcrit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffcrit`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _, _, run = _COMMANDS[args.command]
    try:
        result = run(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"diffcrit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    try:
        if getattr(args, "json", False):
            from diffcrit.validation.runio import dumps

            print(dumps(result))
        else:
            _print_text(result)
        sys.stdout.flush()
    except BrokenPipeError:
        # A reader such as `head` closed the pipe: not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
