"""``python -m lib energy|lifelong|reproduce|compare|search``: the experiments from the command line."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Sequence

from .cli_common import Parser, check_output, non_negative, positive, say
from .data import DataError, write_atomic
from .energy import ENERGY_MODELS, PAPER_WEIGHT_DECAYS, EnergyProtocol, energy_config, run_energy


def _check_subset(parser: Parser, subset: int | None, batch_size: int) -> None:
    """A task keeps at most ``subset`` training examples, and training needs one full mini-batch."""
    if subset is not None and subset < batch_size:
        parser.error(f"--subset {subset} leaves fewer training examples than one mini-batch of {batch_size}; "
                     f"the smallest valid subset is {batch_size}")


def energy_table(rows: list[dict]) -> str:
    """The energy runs written by ``python -m lib energy``, one line each."""
    lines = [f"{'model':13s} {'lambda':>7s} {'seed':>4s} {'p':>5s} {'accuracy':>8s} {'MI (bits)':>9s} "
             f"{'energy':>8s} {'mean p':>6s}"]
    for r in rows:
        p = "learn" if r["p"] is None else f"{r['p']:.3g}"
        lines.append(f"{r['model']:13s} {r['weight_decay']:7g} {r['seed']:4d} {p:>5s} {r['accuracy']:8.4f} "
                     f"{r['mutual_information']:9.4f} {r['energy']:8.1f} {r['mean_p']:6.3f}")
    return "\n".join(lines)


def energy_main(argv: list[str]) -> int:
    """``python -m lib energy``: the runs of the energy experiment (Fig. 1)."""
    parser = Parser(prog="python -m lib energy", description="Fig. 1: information and energy after training on MNIST")
    parser.add_argument("--model", choices=ENERGY_MODELS, required=True)
    parser.add_argument("--weight-decay", type=float, nargs="+", default=list(PAPER_WEIGHT_DECAYS), metavar="X")
    parser.add_argument("--seeds", type=non_negative, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=positive, default=50)
    parser.add_argument("--fixed-p", type=float, default=0.4, help="release probability of the fixed model")
    parser.add_argument("--subset", type=positive, default=None, help="training and test examples to keep")
    parser.add_argument("--json", type=Path, required=True, metavar="OUT")
    args = parser.parse_args(argv)
    check_output(parser, "--json", args.json)
    protocol = EnergyProtocol(epochs=args.epochs, subset=args.subset)
    _check_subset(parser, args.subset, protocol.batch_size)
    try:
        runs = [energy_config(args.model, wd, seed, args.fixed_p) for wd in args.weight_decay for seed in args.seeds]
    except ValueError as err:
        parser.error(str(err))
    try:
        results = run_energy(runs, protocol, progress=True)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    rows = [{"model": args.model, "weight_decay": r.weight_decay, "seed": r.seed, "p": r.p_init if not r.learn_p else None, **res}
            for r, res in zip(runs, results)]
    write_atomic(args.json, json.dumps({"protocol": asdict(protocol), "runs": rows}, indent=1).encode())
    print(energy_table(rows))
    print(f"wrote {len(rows)} runs to {args.json}")
    return 0


def lifelong_parser() -> Parser:
    """The options of ``python -m lib lifelong`` (also the source of :func:`lifelong_command`)."""
    from .continual import LIFELONG_BENCHMARKS, METHODS

    parser = Parser(prog="python -m lib lifelong", description="average accuracy over all tasks after continual learning")
    parser.add_argument("--benchmark", required=True, help=f"one of: {', '.join(LIFELONG_BENCHMARKS)}")
    parser.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    parser.add_argument("--seeds", type=non_negative, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=positive, default=10, help="epochs per task")
    parser.add_argument("--batch-size", type=positive, default=100, help="examples per mini-batch")
    parser.add_argument("--subset", type=positive, default=None, help="training and test examples per task to keep")
    parser.add_argument("--ewc-lambda", type=float, default=None, metavar="X", help="EWC penalty strength (method ewc)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                        help="replace a setting of the method's configuration, e.g. --set lr=0.001 (repeatable)")
    parser.add_argument("--json", type=Path, required=True, metavar="OUT")
    return parser


def parse_settings(method: str, benchmark: str, words: Sequence[str]) -> tuple[tuple[str, float | int | str], ...]:
    """``NAME=VALUE`` words as overrides of ``method``'s configuration on ``benchmark``, each value of the
    type of the setting it replaces (so that ``lr=1`` is the float 1.0: a run's cache key depends on it).
    A word that is not ``NAME=VALUE``, an unknown name or a value of the wrong type raises
    :class:`ValueError` with one line that says why."""
    from .continual import PROTOCOL_FIELDS, method_config

    config = method_config(method, benchmark, 0)
    names = sorted(f.name for f in fields(config) if f.name != "seed")
    overrides = []
    for word in words:
        name, sep, text = word.partition("=")
        if not sep or not name:
            raise ValueError(f"--set needs NAME=VALUE, got {word!r}")
        if name in PROTOCOL_FIELDS:
            raise ValueError(f"{name} is a setting of the protocol: use --{name.replace('_', '-')}")
        if name not in names:
            raise ValueError(f"{method} has no setting {name!r}; its settings: {', '.join(names)}")
        kind = type(getattr(config, name))
        try:
            value = kind(text) if kind is not bool else {"true": True, "false": False}[text.lower()]
        except (ValueError, KeyError):
            raise ValueError(f"{name} takes a value of type {kind.__name__}, got {text!r}") from None
        overrides.append((name, value))
    return tuple(overrides)


def lifelong_command(benchmark: str, method: str, seeds: Sequence[int], *, epochs: int = 10, batch_size: int = 100,
                     subset: int | None = None, overrides: Sequence[tuple[str, float]] = (), json: str = "out.json",
                     python: str = ".venv/bin/python") -> str:
    """The ``python -m lib lifelong`` command that trains (and stores) these runs.

    Every value becomes the option of :func:`lifelong_parser` whose destination has its name (an
    override ``("ewc_lambda", 10.0)`` becomes ``--ewc-lambda 10``, ``("batch_size", 128)`` becomes
    ``--batch-size 128``), any other override becomes ``--set NAME=VALUE``; options at their default are
    left out, except the seeds and the output file. The command is parsed by that parser (and its
    settings by :func:`parse_settings`) before it is returned, so it cannot name an option or a setting
    the command lacks: it raises :class:`ValueError` instead.
    """
    parser = lifelong_parser()
    flags = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
    overrides = dict(overrides)
    own = {k: overrides.pop(k) for k in ("batch_size", "ewc_lambda") if k in overrides}  # settings with an option of their own
    settings = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items()]
    values = {"benchmark": benchmark, "method": method, "seeds": list(seeds), "epochs": epochs, "batch_size": batch_size,
              "subset": subset, **own, "settings": settings or None, "json": json}
    words = []
    for dest, value in values.items():
        if dest not in flags:
            raise ValueError(f"python -m lib lifelong has no option for {dest!r}; its options: "
                             f"{', '.join(flags[d] for d in flags if d != 'help')}")
        if value is None or (dest not in ("seeds", "json") and value == parser.get_default(dest)):
            continue
        items = value if isinstance(value, list) else [value]
        if dest == "settings":
            words += [w for item in items for w in (flags[dest], item)]
        else:
            words += [flags[dest], *(f"{v:g}" if isinstance(v, float) else str(v) for v in items)]
    try:
        parse_settings(method, benchmark, parser.parse_args(words).settings)
    except SystemExit:
        raise ValueError(f"python -m lib lifelong does not accept {' '.join(words)}") from None
    return " ".join([python, "-m lib lifelong", *words])


def lifelong_main(argv: list[str]) -> int:
    """``python -m lib lifelong``: continual-learning runs of one method on one benchmark (Fig. 4, table)."""
    from .continual import LifelongProtocol, RunSpec, method_config, run_specs, summarise

    parser = lifelong_parser()
    args = parser.parse_args(argv)
    check_output(parser, "--json", args.json)
    _check_subset(parser, args.subset, args.batch_size)
    if args.ewc_lambda is not None and (args.method != "ewc" or args.ewc_lambda < 0):
        parser.error("--ewc-lambda needs --method ewc and a value >= 0")
    try:  # unknown names: the library's one-line error, which lists the valid ones
        protocol = LifelongProtocol(args.benchmark, epochs=args.epochs, batch_size=args.batch_size, subset=args.subset)
        overrides = parse_settings(args.method, args.benchmark, args.settings)
        if args.ewc_lambda is not None:
            overrides = (("ewc_lambda", args.ewc_lambda), *overrides)
        method_config(args.method, args.benchmark, args.seeds[0], **dict(overrides))
    except ValueError as err:
        parser.error(str(err))
    try:
        results = run_specs(protocol, [RunSpec(args.method, s, overrides) for s in args.seeds], progress=True)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    summary = summarise(results)
    payload = {"config": {"protocol": asdict(protocol), "method": args.method, "seeds": args.seeds,
                          "overrides": dict(overrides)},
               "average_accuracy": summary, "accuracy_matrix": {str(s): r["accuracy"] for s, r in zip(args.seeds, results)}}
    write_atomic(args.json, json.dumps(payload, indent=1).encode())
    print(f"{args.benchmark} {args.method}: {100 * summary['mean']:.2f} ± {100 * summary['sem']:.2f} % "
          f"over seeds {args.seeds}; wrote {args.json}")
    return 0


def reproduce_main(argv: list[str]) -> int:
    """``python -m lib reproduce``: every paper-scale training run of the book, as jobs on a Dask cluster."""
    from .reproduce import (WorkerSettings, all_jobs, dask_client, dashboard_available, default_workers, describe, reproduce,
                            selected, stored_jobs)

    parser = Parser(prog="python -m lib reproduce",
                    description="train every run of the book that is not stored yet (resumable), on a Dask cluster")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="use the Dask cluster of this scheduler (tcp://HOST:8786)")
    where.add_argument("--cluster", choices=("local", "slurm"), default="local",
                       help="start a cluster: local worker processes (default) or SLURM jobs (pip install .[cluster]; "
                            "configured by Dask's jobqueue.yaml)")
    parser.add_argument("--workers", type=positive, default=None,
                        help="workers to start (local: one per core, one per GPU with CUDA; slurm: one per job)")
    parser.add_argument("--threads", type=positive, default=1, help="torch threads of each job")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="only the jobs whose names contain TEXT (repeatable), with the jobs they need")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs and their estimated times, train nothing")
    args = parser.parse_args(argv)
    if args.scheduler and args.workers:
        parser.error("--workers starts workers; with --scheduler the cluster has its own")
    if args.cluster == "slurm" and importlib.util.find_spec("dask_jobqueue") is None:
        parser.error("--cluster slurm needs dask-jobqueue: pip install .[cluster]")
    jobs = all_jobs()
    if args.only:
        try:
            jobs = selected(jobs, args.only)
        except ValueError as err:
            parser.error(str(err))
    workers = args.workers or (len(jobs) if args.cluster == "slurm" else default_workers())
    if args.dry_run:
        print(describe(jobs, workers, stored_jobs(jobs)))
        return 0
    settings = WorkerSettings.of_this_process(args.threads)
    again = "call it again to go on from the runs stored so far"
    try:
        with dask_client(args.scheduler, args.cluster, workers) as client:
            if dashboard_available():
                say(f"reproduce: Dask dashboard at {client.dashboard_link}")
            record = reproduce(jobs, client, settings, whole=not args.only)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"reproduce: stopped at once, the running jobs are lost; {again}", file=sys.stderr)
        return 130
    done = sum(job.name in record["jobs"] for job in jobs)
    if args.only and done == len(jobs):
        print(f"reproduce: the {len(jobs)} jobs selected are done ({record['wall_seconds'] / 3600:.2f} h of wall time "
              "recorded so far)")
        return 0
    if not record["finished"]:
        print(f"reproduce: stopped after the running jobs ({done} of {len(jobs)} jobs done); {again}", file=sys.stderr)
        return 130
    print(f"reproduce: {len(jobs)} jobs on {record['workers']} workers x {args.threads} threads "
          f"in {record['wall_seconds'] / 3600:.2f} h")
    return 0


def compare_main(argv: list[str]) -> int:
    """``python -m lib compare``: the runs of a second results folder against the stored ones."""
    from .cache import STORED_RESULTS
    from .compare import compare_results, describe_agreement, save_agreement

    parser = Parser(prog="python -m lib compare",
                    description="compare the runs of OTHER with the runs of the same configuration in REFERENCE")
    parser.add_argument("other", type=Path, nargs="?", default=STORED_RESULTS.parent / "results-reproduce",
                        help="results folder to check (default: results-reproduce/, where make reproduce trains)")
    parser.add_argument("--reference", type=Path, default=STORED_RESULTS, help="default: the stored results/")
    parser.add_argument("--save", type=Path, metavar="JSON",
                        help="also write the table to this file (kept when the reproduced runs replace the reference)")
    args = parser.parse_args(argv)
    try:
        agreements = compare_results(args.reference, args.other)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(describe_agreement(agreements))
    if args.save:
        save_agreement(args.save, agreements)
    return 0


def search_main(argv: list[str]) -> int:
    """``python -m lib search``: random search of a method's settings on one benchmark, trials best first."""
    from .continual import LIFELONG_BENCHMARKS, LifelongProtocol
    from .search import TRIALS_PER_BATCH, default_space, describe_trials, random_search

    parser = Parser(prog="python -m lib search",
                    description="random search of a method's settings (resumes from the stored trials)")
    parser.add_argument("--method", required=True, help="presynaptic, an ablation of Fig. 5a, ewc, si or bgd")
    parser.add_argument("--benchmark", required=True, help=f"one of: {', '.join(LIFELONG_BENCHMARKS)}")
    parser.add_argument("--trials", type=positive, required=True, help="settings drawn at random")
    parser.add_argument("--seed", type=non_negative, default=0, help="seed of the draws of the settings")
    parser.add_argument("--run-seed", type=non_negative, default=0, help="seed of every trial's run")
    parser.add_argument("--epochs", type=positive, default=10, help="epochs per task")
    parser.add_argument("--subset", type=positive, default=None, help="training and test examples per task to keep")
    parser.add_argument("--max-batch", type=positive, default=TRIALS_PER_BATCH,
                        help="runs trained together; each batch is stored when it is done")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the trials to this file")
    args = parser.parse_args(argv)
    if args.json:
        check_output(parser, "--json", args.json)
    _check_subset(parser, args.subset, 100)
    try:  # unknown names: the library's one-line error, which lists the valid ones
        protocol = LifelongProtocol(args.benchmark, epochs=args.epochs, subset=args.subset)
        default_space(args.method)
    except ValueError as err:
        parser.error(str(err))
    options = dict(method=args.method, seed=args.seed, run_seed=args.run_seed, max_batch=args.max_batch)
    stored = random_search(protocol, args.trials, train=False, **options)
    missing = sum(math.isnan(row["average"]) for row in stored)
    say(f"search: {args.method} on {args.benchmark}, {len(stored)} runs ({args.trials} trials and the method's "
        f"own settings), {len(stored) - missing} stored, {missing} to train in batches of {args.max_batch}")

    def report(done: int, total: int) -> None:
        say(f"search: {done} of {total} runs trained and stored")

    try:
        rows = random_search(protocol, args.trials, on_stored=report, **options)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(describe_trials(rows))
    if args.json:
        payload = {"config": {"protocol": asdict(protocol), **options, "trials": args.trials}, "trials": rows}
        write_atomic(args.json, json.dumps(payload, indent=1).encode())
        say(f"wrote {len(rows)} runs to {args.json}")
    return 0
