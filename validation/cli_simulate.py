"""``diffcrit simulate``: experiment E1 (patch-model ensemble against its theory).

Registers the subcommand with :func:`diffcrit.validation.cli.command` when imported.
"""

from __future__ import annotations

from diffcrit.validation.cli import _json_argument, command

#: Models ``simulate`` knows.
SIMULATE_MODELS = ("patch",)


def _add_simulate(parser):
    parser.add_argument("--data", default="digits", metavar="SPEC",
                        help="dataset spec (standardized globally), e.g. digits, "
                             "synthetic:binary?size=16&corr=1.5 (default: digits)")
    parser.add_argument("--model", default="patch",
                        help=f"denoiser model; one of {', '.join(SIMULATE_MODELS)} (default patch)")
    parser.add_argument("--window", type=int, default=3, metavar="P", help="odd window side (default 3)")
    parser.add_argument("--schedule", default="vp-linear", metavar="NAME",
                        help="schedule whose clock the results are also read in (default vp-linear)")
    parser.add_argument("--n", type=int, default=256, help="ensemble size (>= 8; default 256)")
    parser.add_argument("--size", type=int, default=32, help="lattice side of the simulated fields (default 32)")
    parser.add_argument("--method", default="heun", help="probability-flow sampler: heun, euler, ddim (default heun)")
    parser.add_argument("--levels", type=int, default=40, metavar="N",
                        help="observed noise levels, log-spaced from s_max to s_min (default 40)")
    parser.add_argument("--s-max", type=float, default=None, help="start noise level (default: well above the data scale)")
    parser.add_argument("--s-min", type=float, default=None, help="end noise level (default 0.05 x data std)")
    parser.add_argument("--theory-levels", default="moment,homogeneous,marginal",
                        help="comma-separated theory levels to compare (default all three)")
    parser.add_argument("--bootstrap", type=int, default=400, help="bootstrap replicates (default 400)")
    parser.add_argument("--prune-margin", type=float, default=None,
                        help="exact pruning margin of the patch denoiser (default: none); it pays only "
                             "at low noise: where most patch blocks survive (moderate and high noise) "
                             "the pruned kernel is several times slower than none (see diffcrit bench)")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                        help="precision of the denoiser and the trajectories (default float64; "
                             "float32 is about twice as fast)")
    parser.add_argument("--theory-samples", type=int, default=32, metavar="N",
                        help="Monte Carlo draws of the marginal theory level (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="run folder (default runs/e1-<data>-P<window>); the ensemble is checkpointed to "
                             "DIR.sampling-checkpoint.pkl every 5 minutes, so rerunning an interrupted command "
                             "resumes it")
    _json_argument(parser)


def _default_out(data: str, window: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in data)
    return f"runs/e1-{safe}-P{window}"


@command("simulate", "experiment E1: simulate the patch model's ensemble and compare with its theory")(_add_simulate)
def _run_simulate(args) -> dict:
    from diffcrit.validation.e1 import run_e1, write_e1

    if args.model not in SIMULATE_MODELS:
        raise ValueError(f"--model must be one of {list(SIMULATE_MODELS)}, got {args.model!r}")
    if args.window < 1 or args.window % 2 == 0:
        raise ValueError(f"--window must be an odd side >= 1 (3, 5, 7, ...), got {args.window}")
    if args.n < 8:
        raise ValueError(f"--n must be >= 8 (a bootstrap over fewer members is too coarse), got {args.n}")
    levels = tuple(v.strip() for v in args.theory_levels.split(",") if v.strip())
    from pathlib import Path

    out = Path(args.out or _default_out(args.data, args.window))
    # beside the run folder (which is replaced whole at the end): rerunning an
    # interrupted command resumes the ensemble where it stopped
    checkpoint = out.with_name(out.name + ".sampling-checkpoint.pkl")
    result = run_e1(
        args.data, window=args.window, schedule=args.schedule, n=args.n, size=args.size,
        method=args.method, n_levels=args.levels, s_max=args.s_max, s_min=args.s_min, rng=args.seed,
        progress=not args.json, prune_margin=args.prune_margin, levels=levels, n_bootstrap=args.bootstrap,
        dtype=args.dtype, n_theory_samples=args.theory_samples, checkpoint=checkpoint,
    )
    summary = write_e1(out, result)
    checkpoint.unlink(missing_ok=True)  # the run folder holds everything now
    return {"command": "simulate", **summary}
