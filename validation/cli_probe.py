"""``diffcrit probe``: experiment E2 (a trained convolutional denoiser against the patch theory).

Registers the subcommand with :func:`diffcrit.validation.cli.command` when imported.
"""

from __future__ import annotations

from diffcrit.validation.cli import _json_argument, command


def _add_probe(parser):
    parser.add_argument("--data", default="digits", metavar="SPEC",
                        help="dataset spec (standardized globally), e.g. digits, "
                             "synthetic:binary?size=16&corr=1.5 (default: digits)")
    parser.add_argument("--network", default=None, metavar="PATH",
                        help="a saved network (network.pt of an earlier run) to probe instead of training one")
    parser.add_argument("--depth", type=int, default=3, help="convolution layers of a new network (default 3)")
    parser.add_argument("--channels", type=int, default=32, help="hidden channels of a new network (default 32)")
    parser.add_argument("--kernel-size", type=int, default=3,
                        help="odd kernel side; receptive field 1 + depth (kernel - 1) (default 3)")
    parser.add_argument("--train-steps", type=int, default=2000, help="training steps of a new network (default 2000)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    parser.add_argument("--schedule", default="vp-linear", metavar="NAME",
                        help="schedule whose clock the results are also read in (default vp-linear)")
    parser.add_argument("--n", type=int, default=256, help="ensemble size (>= 8; default 256)")
    parser.add_argument("--size", type=int, default=32, help="lattice side of the simulated fields (default 32)")
    parser.add_argument("--n-jacobian", type=int, default=32,
                        help="members whose whole local Jacobian is measured at each level (default 32)")
    parser.add_argument("--method", default="heun", help="probability-flow sampler: heun, euler, ddim (default heun)")
    parser.add_argument("--levels", type=int, default=30, metavar="N",
                        help="observed noise levels, log-spaced from s_max to s_min (default 30)")
    parser.add_argument("--s-max", type=float, default=None, help="start noise level (default: well above the data scale)")
    parser.add_argument("--s-min", type=float, default=None, help="end noise level (default 0.05 x data std)")
    parser.add_argument("--theory-levels", default="moment,homogeneous,marginal",
                        help="comma-separated theory levels to compare (default all three)")
    parser.add_argument("--fraction", type=float, default=0.9,
                        help="off-centre Jacobian kernel mass that defines the effective window (default 0.9)")
    parser.add_argument("--bootstrap", type=int, default=400, help="bootstrap replicates (default 400)")
    parser.add_argument("--theory-samples", type=int, default=32, metavar="N",
                        help="Monte Carlo draws of the marginal theory level (default 32)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                        help="precision of the network evaluation (default float32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/e2-<data>)")
    _json_argument(parser)


@command("probe", "experiment E2: train (or load) a periodic convolutional denoiser and probe it "
                  "against the patch theory")(_add_probe)
def _run_probe(args) -> dict:
    from pathlib import Path

    from diffcrit.validation.e2 import run_e2, write_e2

    if args.network is not None and not Path(args.network).is_file():
        raise ValueError(f"--network {args.network!r} is not a file")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in args.data)
    out = Path(args.out or f"runs/e2-{safe}")
    checkpoint = out.with_name(out.name + ".training-checkpoint.pt")
    levels = tuple(v.strip() for v in args.theory_levels.split(",") if v.strip())
    result = run_e2(
        args.data, net=args.network, depth=args.depth, channels=args.channels, kernel_size=args.kernel_size,
        train_steps=args.train_steps, batch_size=args.batch_size, lr=args.lr,
        checkpoint=None if args.network else checkpoint, schedule=args.schedule, n=args.n, size=args.size,
        n_jacobian=args.n_jacobian, method=args.method, n_levels=args.levels, s_max=args.s_max, s_min=args.s_min,
        levels=levels, fraction=args.fraction, n_bootstrap=args.bootstrap, n_theory_samples=args.theory_samples,
        dtype=args.dtype, rng=args.seed, progress=not args.json,
    )
    summary = write_e2(out, result)
    # the network is in the run folder now; the checkpoint only served an interrupted training
    checkpoint.unlink(missing_ok=True)
    return {"command": "probe", **summary}
