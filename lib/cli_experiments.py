"""``python -m lib energy|lifelong|reproduce|compare|search``: the experiments from the command line."""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

from .data import DataError, write_atomic
from .experiments import ENERGY_MODELS, PAPER_WEIGHT_DECAYS, EnergyProtocol, energy_run, run_energy


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def energy_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib energy", description="Fig. 1: information and energy after training on MNIST")
    parser.add_argument("--model", choices=ENERGY_MODELS, required=True)
    parser.add_argument("--weight-decay", type=float, nargs="+", default=list(PAPER_WEIGHT_DECAYS), metavar="X")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=_positive, default=50)
    parser.add_argument("--fixed-p", type=float, default=0.4, help="release probability of the fixed model")
    parser.add_argument("--subset", type=_positive, default=None, help="training and test examples to keep")
    parser.add_argument("--json", type=Path, required=True, metavar="OUT")
    args = parser.parse_args(argv)
    try:
        runs = [energy_run(args.model, wd, seed, args.fixed_p) for wd in args.weight_decay for seed in args.seeds]
    except ValueError as err:
        parser.error(str(err))
    protocol = EnergyProtocol(epochs=args.epochs, subset=args.subset)
    try:
        results = run_energy(runs, protocol)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    rows = [{"model": args.model, "weight_decay": r.weight_decay, "seed": r.seed, "p": r.p_init if not r.learn_p else None, **res}
            for r, res in zip(runs, results)]
    write_atomic(args.json, json.dumps({"protocol": asdict(protocol), "runs": rows}, indent=1).encode())
    print(f"wrote {len(rows)} runs to {args.json}")
    return 0


def lifelong_main(argv: list[str]) -> int:
    """``python -m lib lifelong``: continual-learning runs of one method on one benchmark (Fig. 4, table)."""
    from .continual import LIFELONG_BENCHMARKS, METHODS, LifelongProtocol, RunSpec, method_run, run_specs, summarise

    parser = argparse.ArgumentParser(prog="python -m lib lifelong",
                                     description="average accuracy over all tasks after continual learning")
    parser.add_argument("--benchmark", required=True, help=f"one of: {', '.join(LIFELONG_BENCHMARKS)}")
    parser.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=_positive, default=10, help="epochs per task")
    parser.add_argument("--batch-size", type=_positive, default=100, help="examples per mini-batch")
    parser.add_argument("--subset", type=_positive, default=None, help="training and test examples per task to keep")
    parser.add_argument("--ewc-lambda", type=float, default=None, metavar="X", help="EWC penalty strength (method ewc)")
    parser.add_argument("--json", type=Path, required=True, metavar="OUT")
    args = parser.parse_args(argv)
    if args.ewc_lambda is not None and (args.method != "ewc" or args.ewc_lambda < 0):
        parser.error("--ewc-lambda needs --method ewc and a value >= 0")
    overrides = () if args.ewc_lambda is None else (("ewc_lambda", args.ewc_lambda),)
    try:  # unknown names: the library's one-line error, which lists the valid ones
        protocol = LifelongProtocol(args.benchmark, epochs=args.epochs, batch_size=args.batch_size, subset=args.subset)
        method_run(args.method, args.benchmark, args.seeds[0], **dict(overrides))
    except ValueError as err:
        parser.error(str(err))
    try:
        results = run_specs(protocol, [RunSpec(args.method, s, overrides) for s in args.seeds])
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
    """``python -m lib reproduce``: every paper-scale training run of the book, several processes at once."""
    from .reproduce import all_jobs, default_workers, describe, reproduce

    parser = argparse.ArgumentParser(prog="python -m lib reproduce",
                                     description="train every run of the book that is not stored yet (resumable)")
    parser.add_argument("--workers", type=_positive, default=default_workers(),
                        help="processes training side by side (default: one per core, one on a GPU)")
    parser.add_argument("--threads", type=_positive, default=1, help="threads per process")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs and their relative costs, train nothing")
    args = parser.parse_args(argv)
    jobs = all_jobs()
    if args.dry_run:
        print(describe(jobs))
        return 0
    again = "call it again to go on from the runs stored so far"
    try:
        record = reproduce(jobs, args.workers, args.threads)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"reproduce: stopped at once, the running jobs are lost; {again}", file=sys.stderr)
        return 130
    if not record["finished"]:
        print(f"reproduce: stopped after the running jobs ({len(record['jobs'])} of {len(jobs)} jobs done); {again}",
              file=sys.stderr)
        return 130
    print(f"reproduce: {len(jobs)} jobs on {args.workers} workers x {args.threads} threads "
          f"in {record['wall_seconds'] / 3600:.2f} h")
    return 0


def compare_main(argv: list[str]) -> int:
    """``python -m lib compare``: the runs of a second results folder against the stored ones."""
    from .experiments import STORED_RESULTS
    from .reproduce import compare_results, describe_agreement, save_agreement

    parser = argparse.ArgumentParser(prog="python -m lib compare",
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

    parser = argparse.ArgumentParser(prog="python -m lib search",
                                     description="random search of a method's settings (resumes from the stored trials)")
    parser.add_argument("--method", required=True, help="presynaptic, an ablation of Fig. 5a, ewc or bgd")
    parser.add_argument("--benchmark", required=True, help=f"one of: {', '.join(LIFELONG_BENCHMARKS)}")
    parser.add_argument("--trials", type=_positive, required=True, help="settings drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws of the settings")
    parser.add_argument("--run-seed", type=int, default=0, help="seed of every trial's run")
    parser.add_argument("--epochs", type=_positive, default=10, help="epochs per task")
    parser.add_argument("--subset", type=_positive, default=None, help="training and test examples per task to keep")
    parser.add_argument("--max-batch", type=_positive, default=TRIALS_PER_BATCH,
                        help="runs trained together; each batch is stored when it is done")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the trials to this file")
    args = parser.parse_args(argv)
    try:  # unknown names: the library's one-line error, which lists the valid ones
        protocol = LifelongProtocol(args.benchmark, epochs=args.epochs, subset=args.subset)
        default_space(args.method)
    except ValueError as err:
        parser.error(str(err))
    options = dict(method=args.method, seed=args.seed, run_seed=args.run_seed, max_batch=args.max_batch)
    stored = random_search(protocol, args.trials, train=False, **options)
    missing = sum(math.isnan(row["average"]) for row in stored)
    print(f"search: {args.method} on {args.benchmark}, {len(stored)} runs ({args.trials} trials and the method's "
          f"own settings), {len(stored) - missing} stored, {missing} to train in batches of {args.max_batch}",
          file=sys.stderr)

    def report(done: int, total: int) -> None:
        print(f"search: {done} of {total} runs trained and stored", file=sys.stderr)

    try:
        rows = random_search(protocol, args.trials, on_stored=report, **options)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(describe_trials(rows))
    if args.json:
        payload = {"config": {"protocol": asdict(protocol), **options, "trials": args.trials}, "trials": rows}
        write_atomic(args.json, json.dumps(payload, indent=1).encode())
        print(f"wrote {len(rows)} runs to {args.json}", file=sys.stderr)
    return 0
