"""Train BGD with the reference implementation (a checkout of igolan/bgd) on tasks exported by crosscheck.py.

Runs inside its own virtual environment (torch, numpy<2, pandas<2: the reference's probes use
``DataFrame.append``), never imports the book's ``lib``. Everything that learns is the reference's own:
its 784-200-200-10 model, its default initialisation (``main.py``'s ``--init_params``: Xavier-normal
weights and biases), its ``BGD`` optimiser and its ``NNTrainer`` loop, which trains the tasks one after
another, ``epochs`` epochs each, and evaluates every task's test set after every epoch. The adapter only
wraps the exported arrays in data loaders (shuffled training batches, the last incomplete one kept, as
the reference's loaders do) and reads the accuracies back.

Writes a JSON with the accuracy of every task after each task (the trainer's ``test_mc`` evaluations:
the accuracy of single Monte-Carlo passes, averaged) and, after the last task, a second evaluation per
task with both of the reference's Monte-Carlo inferences (``test_mc`` and ``agg_softmax``, which
averages the softmax of the passes as the book does).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from peer_arguments import peer_parser

# The reference's ``main.py`` default of ``--init_params``, as a dict.
REFERENCE_INIT = {"bias_type": "xavier", "conv_type": "xavier", "bn_init": "01"}
ARCHITECTURE = "mnist_simple_net_200width_domainlearning_784input_10cls_1ds"


def loaders(x: np.ndarray, y: np.ndarray, perms: np.ndarray, batch_size: int, shuffle: bool) -> list:
    """One data loader per task: the task's permutation applied to the exported (normalised) images."""
    labels = torch.from_numpy(y)
    return [torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x[:, p]), labels),
                                        batch_size=batch_size, shuffle=shuffle, num_workers=0)
            for p in perms]


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0], checkout_of="igolan/bgd")
    parser.add_argument("--std-init", type=float, default=0.05)
    parser.add_argument("--mean-eta", type=float, default=1.0)
    parser.add_argument("--mc-iters", type=int, default=10)
    parser.add_argument("--test-mc-iters", type=int, default=10)
    parser.add_argument("--workdir", type=Path, required=True, help="where the reference writes its logs")
    args = parser.parse_args()
    if not (args.checkout / "optimizers_lib" / "bgd_optimizer.py").is_file():
        sys.exit(f"error: {args.checkout} is not a checkout of igolan/bgd (no optimizers_lib/bgd_optimizer.py)")
    sys.path.insert(0, str(args.checkout.resolve()))
    import models  # noqa: E402  (the reference's packages, importable only now)
    import optimizers_lib
    from nn_utils.init_utils import init_model
    from nn_utils.NNTrainer import NNTrainer
    from probes_lib.top import ProbesManager
    from utils.logging_utils import Logger
    from utils.utils import set_seed

    arrays = {name: np.load(args.data / f"{name}.npy") for name in
              ("train_x", "train_y", "test_x", "test_y", "permutations")}
    perms = arrays["permutations"]
    n_tasks = len(perms)
    train = loaders(arrays["train_x"], arrays["train_y"], perms, args.batch_size, shuffle=True)
    test = loaders(arrays["test_x"], arrays["test_y"], perms, args.batch_size, shuffle=False)

    args.workdir.mkdir(parents=True, exist_ok=True)
    logger = Logger(True, str(args.workdir / "bgd_reference"), True, False)
    set_seed(args.seed, fully_deterministic=False)
    probes = ProbesManager()
    model = models.__dict__[ARCHITECTURE](probes_manager=probes)
    init_model(model, logger=logger, **REFERENCE_INIT)
    optimizer = optimizers_lib.bgd(model, logger=logger, probes_manager=probes, mean_eta=args.mean_eta,
                                   std_init=args.std_init, mc_iters=args.mc_iters)
    trainer = NNTrainer(train_loader=train, test_loader=test, criterion=torch.nn.CrossEntropyLoss(), net=model,
                        logger=logger, probes_manager=probes, std_init=args.std_init, mean_eta=args.mean_eta,
                        train_mc_iters=args.mc_iters, test_mc_iters=args.test_mc_iters, committee_size=0,
                        batch_size=args.batch_size, inference_methods={"test_mc"}, pruning_percents=[],
                        bw_to_rgb=False, labels_trick=False, test_freq=1, optimizer=optimizer)
    start = time.perf_counter()
    trainer.train_epochs(verbose_freq=100, max_epoch=n_tasks * args.epochs)
    seconds = time.perf_counter() - start

    stats = probes.per_epoch_stats  # one row per epoch, accuracies in percent
    columns = [f"test_test_mc_acc_loss{t}_test_acc" for t in range(n_tasks)]
    after_task = [[float(stats[c].iloc[(t + 1) * args.epochs - 1]) / 100 for c in columns] for t in range(n_tasks)]
    final = {}
    for inference in ("test_mc", "agg_softmax"):
        final[inference] = [trainer.forward(data_loader=loader, training=False, verbose_freq=0,
                                            inference_method=inference)[1] / 100 for loader in test]
    result = {
        "implementation": "igolan/bgd (reference BGD: models/mnist_simple.py, nn_utils, optimizers_lib/bgd_optimizer.py)",
        "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k not in ("checkout", "data", "out", "workdir")},
        "accuracy": after_task,
        "average": float(np.mean(after_task[-1])),
        "final_by_inference": {k: {"per_task": v, "average": float(np.mean(v))} for k, v in final.items()},
        "seconds": seconds,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(f"reference BGD: average accuracy after the last task {result['average']:.4f} "
          f"(test_mc), re-evaluated: " + ", ".join(f"{k} {v['average']:.4f}" for k, v in result["final_by_inference"].items())
          + f"; trained in {seconds:.0f} s")


if __name__ == "__main__":
    main()
