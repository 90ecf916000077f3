"""The ``diffcrit predict`` subcommand: the linear theory of one model on one data set.

``diffcrit predict --data SPEC --model patch --window 3 --schedule vp-linear --json``
prints :meth:`diffcrit.theory.predict.Prediction.to_dict` as one JSON object (keys
``kind``, ``level``, ``critical_noise``, ``critical_time``, ``critical_mode`` as
integer lattice indices ``[k_y, k_x]``, ``min_stiffness``, ``schedule``, ``model``,
the curves and more); without ``--json`` it prints the headline numbers. Bad input
raises ValueError/TypeError, which the CLI turns into exit status 2.

Registered with :func:`diffcrit.validation.cli.command` when this module is
imported (listed in ``COMMAND_MODULES``).
"""

from __future__ import annotations

import argparse

from diffcrit.validation.cli import command

__all__ = ["add_predict_arguments", "run_predict"]

_DEFAULT_GRID_POINTS = 60


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``diffcrit predict``."""
    parser.add_argument(
        "--data", default="digits", metavar="SPEC",
        help="dataset spec: digits | idx:PATH | npy:PATH | npz:PATH | synthetic:grf?... | "
             "synthetic:binary?... | synthetic:stripes?... (default: digits)",
    )
    parser.add_argument("--standardize", default="global", choices=["global", "per-pixel", "none"],
                        help="standardization of the data (default: global, one scalar mean and std)")
    parser.add_argument("--model", default="patch", metavar="NAME",
                        help="gaussian | mixture | memorizing | patch (default: patch)")
    parser.add_argument("--window", type=int, default=None, metavar="P",
                        help="patch window side, odd (patch model only; default 3)")
    parser.add_argument("--mode", default=None, metavar="MODE",
                        help="patch mode: equivariant | local | global (patch model only; default equivariant)")
    parser.add_argument("--class", dest="conditional_on", type=int, default=None, metavar="C",
                        help="class-conditional patch model: only images of class C (needs labels)")
    parser.add_argument("--schedule", default="vp-linear", metavar="SPEC",
                        help="schedule whose clock the times are given in (default: vp-linear)")
    parser.add_argument("--level", default="homogeneous", metavar="LEVEL",
                        help="theory level: moment | homogeneous | marginal (default: homogeneous)")
    parser.add_argument("--size", type=int, default=None, metavar="L",
                        help="lattice side L of the k grid (equivariant patch model; default: the images')")
    parser.add_argument("--s-min", type=float, default=None, metavar="S",
                        help="lowest noise level of the curves (with --s-max; default: the model's grid)")
    parser.add_argument("--s-max", type=float, default=None, metavar="S",
                        help="highest noise level of the curves (with --s-min)")
    parser.add_argument("--n-s", type=int, default=_DEFAULT_GRID_POINTS, metavar="N",
                        help=f"points of the log-spaced grid from --s-max to --s-min (default {_DEFAULT_GRID_POINTS})")
    parser.add_argument("--samples", type=int, default=32, metavar="N",
                        help="Monte Carlo draws at the marginal level (default 32)")
    parser.add_argument("--pixels", default="64", metavar="N",
                        help="pixels per draw at the marginal level of the patch model, or 'all' (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo draws (default 0)")
    parser.add_argument("--dynamics", default="ode", metavar="ode|sde",
                        help="dynamics of the linear fluctuation theory (default: ode)")
    parser.add_argument("--arrays", action="store_true",
                        help="with --json: include the full kappa(k, s) array")
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of text")


def _noise_grid(args: argparse.Namespace):
    import numpy as np

    if args.s_min is None and args.s_max is None:
        return None
    if args.s_min is None or args.s_max is None:
        raise ValueError("--s-min and --s-max go together (the grid runs from --s-max down to --s-min)")
    if not (np.isfinite(args.s_min) and args.s_min > 0):
        raise ValueError(f"--s-min must be a positive noise level, got {args.s_min!r}")
    if not (np.isfinite(args.s_max) and args.s_max > args.s_min):
        raise ValueError(f"--s-max must be finite and > --s-min ({args.s_min!r}), got {args.s_max!r}")
    if args.n_s < 2:
        raise ValueError(f"--n-s must be >= 2, got {args.n_s}")
    return np.geomspace(args.s_max, args.s_min, args.n_s)


def _model(args: argparse.Namespace):
    from diffcrit.theory.predict import model_from_spec

    name = str(args.model).strip().lower()
    patch_only = {"--window": args.window, "--mode": args.mode, "--class": args.conditional_on}
    if name != "patch":
        given = [flag for flag, value in patch_only.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} applies to --model patch only, not --model {args.model}")
        return model_from_spec(name)
    mode = "equivariant" if args.mode is None else args.mode
    window = 3 if args.window is None else args.window
    return model_from_spec(name, window=None if mode == "global" else window, mode=mode,
                           conditional_on=args.conditional_on)


def _pixels(text: str) -> int | None:
    if str(text).strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--pixels must be a positive integer or 'all', got {text!r}") from None


@command("predict", "linear theory: critical noise, critical mode and time in a schedule's clock")(
    add_predict_arguments)
def run_predict(args: argparse.Namespace) -> dict:
    """Run ``diffcrit predict``; returns the JSON-able result."""
    from diffcrit.data import load_dataset
    from diffcrit.theory.predict import predict
    from diffcrit.theory.schedules import get_schedule

    # cheap checks first, then load data, then the theory
    model = _model(args)
    schedule = get_schedule(args.schedule)
    grid = _noise_grid(args)
    pixels = _pixels(args.pixels)
    dataset = load_dataset(args.data, standardize=args.standardize)
    prediction = predict(dataset, model, schedule, level=args.level, lattice=args.size, s_grid=grid,
                         rng=args.seed, n_samples=args.samples, pixels_per_sample=pixels,
                         dynamics=args.dynamics)
    if args.json:
        return {"command": "predict", **prediction.to_dict(arrays=args.arrays)}
    return {"command": "predict", **prediction.summary()}
