"""``diffcrit guide``: experiment E3 (guidance pulse at the critical noise vs random windows).

Registers the subcommand with :func:`diffcrit.validation.cli.command` when imported.
"""

from __future__ import annotations

from diffcrit.validation.cli import _json_argument, command

#: Denoiser families ``guide`` knows (same as :data:`diffcrit.validation.e3.E3_MODELS`).
GUIDE_MODELS = ("patch", "memorizing")
GUIDE_MODES = ("local", "equivariant", "global")


def _add_guide(parser):
    parser.add_argument("--data", default="digits", metavar="SPEC",
                        help="labelled dataset spec (standardized globally), e.g. digits, "
                             "idx:PATH?labels=PATH, npz:PATH?key=images&labels=labels (default: digits)")
    parser.add_argument("--model", default="patch", choices=GUIDE_MODELS,
                        help="denoiser family of the unconditional/conditional pair (default patch)")
    parser.add_argument("--window", type=int, default=5, metavar="P",
                        help="odd window side of the patch model (default 5; ignored by --model memorizing "
                             "and --mode global)")
    parser.add_argument("--mode", default="local", choices=GUIDE_MODES,
                        help="patch-model mode (default local: each pixel sees the patches at its own "
                             "position; ignored by --model memorizing)")
    parser.add_argument("--weight", type=float, default=2.0, metavar="W",
                        help="guidance weight w inside the window: D_u + w (D_c - D_u) (default 2)")
    parser.add_argument("--width", type=float, default=1.0, metavar="DELTA",
                        help="window width in ln s (default 1.0)")
    parser.add_argument("--n-per-class", type=int, default=12, metavar="N",
                        help="trajectories per class, the same initial noise for every run (>= 2; default 12; "
                             "the cost is proportional to it)")
    parser.add_argument("--classes", default=None, metavar="LIST",
                        help="comma-separated class labels to target (default: all classes)")
    parser.add_argument("--sweep", type=int, default=12, metavar="N",
                        help="window centres of the sweep, log-spaced over the admissible range (default 12)")
    parser.add_argument("--random", type=int, default=24, metavar="N",
                        help="random window centres, uniform in ln s (default 24; the p-value is >= 1/(N+1))")
    parser.add_argument("--s-star", type=float, default=None, metavar="S",
                        help="centre of the target window (default: the predicted s_c of the unconditional model)")
    parser.add_argument("--level", default="homogeneous", choices=("moment", "homogeneous", "marginal"),
                        help="theory level of the predicted s_c (default homogeneous; for the local patch and the "
                             "memorizing models it is the stability of the mean trajectory)")
    parser.add_argument("--schedule", default="vp-linear", metavar="NAME",
                        help="schedule whose clock the times are reported in (default vp-linear)")
    parser.add_argument("--levels", type=int, default=40, metavar="N",
                        help="noise levels of the geometric base grid from s_max to s_min; window edges are "
                             "added (default 40)")
    parser.add_argument("--s-max", type=float, default=None, help="start noise level (default 10 x data std)")
    parser.add_argument("--s-min", type=float, default=None,
                        help="last positive noise level before the final step to 0 (default 0.05 x data std)")
    parser.add_argument("--method", default="heun", choices=("heun", "euler", "ddim"),
                        help="deterministic probability-flow sampler (default heun)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap replicates (default 1000)")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                        help="precision of the denoisers and trajectories (default float64; float32 is about "
                             "twice as fast for the patch model)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="run folder (default runs/e3-<data>-<model>[-<mode>-P<window>])")
    _json_argument(parser)


def _default_out(data: str, model: str, mode: str, window: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in data)
    if model == "memorizing":
        return f"runs/e3-{safe}-memorizing"
    if mode == "global":
        return f"runs/e3-{safe}-patch-global"
    return f"runs/e3-{safe}-patch-{mode}-P{window}"


def _parse_classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"--classes must be a comma-separated list of class labels, got {text!r}")
    try:
        return [int(item) for item in items]
    except ValueError:
        raise ValueError(f"--classes must be integer class labels separated by commas, got {text!r}") from None


@command("guide", "experiment E3: guidance pulse at the predicted critical noise against random windows")(_add_guide)
def _run_guide(args) -> dict:
    from diffcrit.validation.e3 import run_e3, write_e3

    result = run_e3(
        args.data, model=args.model, window=args.window, mode=args.mode, weight=args.weight,
        width_ln_s=args.width, n_per_class=args.n_per_class, classes=_parse_classes(args.classes),
        n_sweep=args.sweep, n_random=args.random, s_star=args.s_star, level=args.level, schedule=args.schedule,
        n_levels=args.levels, s_max=args.s_max, s_min=args.s_min, method=args.method, n_bootstrap=args.bootstrap,
        confidence=args.confidence, dtype=args.dtype, rng=args.seed, progress=not args.json,
    )
    out = args.out or _default_out(args.data, args.model, args.mode, args.window)
    return {"command": "guide", **write_e3(out, result)}
