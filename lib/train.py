"""Training engine: whole datasets as tensors, R runs trained together, one mini-batch step at a time.

One training step of every run (authors' ``_train_step_ddc`` in their ``lib/train.py``):

1. draw a fresh release mask per layer and transmit :math:`r\\,\\bar w/p` (:func:`lib.model.release_masks`;
   the masks' random numbers are computed inside the compiled step);
2. mean cross-entropy of the mini-batch and its gradient :math:`g = \\partial L/\\partial \\bar w`
   (the gradient on the sampled sub-network, :math:`(r/p)\\,\\partial L/\\partial w`);
3. (modulated) SGD on :math:`\\bar w` (eq. 5) with the current :math:`p`;
4. release-probability update from the same gradient (eq. 4).

Runs with a consolidation penalty (EWC, SI) add its gradient to that of step 2 before steps 3-4; SI's
path integral then adds the step's contribution of every parameter (:func:`_step`).

Runs never interact: each has its own generator for initialisation and mini-batch order, and its
own streams of masks.
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .metrics import cross_entropy, mutual_information, soft_confusion
from .compilation import compile_worthwhile, compiled_or_eager
from .model import (ADAM_BETAS, ADAM_EPS, StochasticMLP, SynapseConfig, accumulate_path_integral, mlp_backward,
                    mlp_forward, release_masks, release_probabilities)
from .plasticity import adam_step, learning_rate_factor, sgd_step, update_release_probability
from .tasks import Benchmark, Task

EvalEvery = Literal["epoch", "task", "end", "never"]


def default_device() -> torch.device:
    """CUDA when present, the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class StepPlan:
    """Which parts of the update the runs of a network need, decided once per network.

    Static flags let the step skip work no run needs (and let the compiler specialise on them).
    """

    stochastic: bool
    learn_p: bool
    mixed_p: bool
    freeze: bool
    lr_modulation: bool
    weight_decay: bool
    learn_bias: bool
    scaled: Literal["all", "none", "mixed"]
    ghost: bool
    adam: bool
    ewc: bool
    si: bool
    own_signal: bool

    @classmethod
    def of(cls, net: StochasticMLP) -> "StepPlan":
        scaled = net.hp["scaled"]
        return cls(
            stochastic=net.stochastic,
            learn_p=net.any_run("learn_p"),
            mixed_p=net.any_run("learn_p") and not net.all_runs("learn_p"),
            freeze=bool(torch.isfinite(net.hp["p_freeze"]).any()),
            lr_modulation=net.any_run("lr_modulation"),
            weight_decay=bool((net.hp["weight_decay"] != 0).any()),
            learn_bias=net.any_run("learn_bias"),
            scaled="all" if bool(scaled.all()) else "none" if not bool(scaled.any()) else "mixed",
            ghost=net.any_run("ghost"),
            adam="adam_step" in net.state,
            ewc="fisher_w" in net.state,
            si="si_path_w" in net.state,
            own_signal="signal_w" in net.state,
        )


def _step(
    plan: StepPlan,
    weights: list[Tensor],
    biases: list[Tensor],
    probs: list[Tensor],
    mask: tuple[Tensor, Tensor] | None,
    x: Tensor,
    y: Tensor,
    hp: dict[str, Tensor],
    state: dict[str, list[Tensor]],
) -> Tensor:
    """The training step on plain tensors (updates ``weights``, ``biases``, ``probs``, ``state`` in place);
    a stochastic network's release mask is ``mask`` (:meth:`StochasticMLP.next_mask`).

    Synaptic intelligence (``plan.si``) adds its penalty's gradient :math:`2c\\,\\Omega(\\theta - \\theta^*)`
    (Zenke et al. 2017, eq. 4) to the gradient the optimiser steps with, and adds
    :math:`-g\\,\\Delta\\theta` to the path integral :math:`\\omega`
    (:func:`lib.model.accumulate_path_integral`), where :math:`\\Delta\\theta` is the change the step made
    and :math:`g` the gradient of the mini-batch's cross-entropy alone, without the penalty (and without
    L2 decay): :math:`\\omega` measures each parameter's share of the decrease of the current task's loss
    (eqs. 2-3), which the penalty, a pull back towards the earlier tasks, is no part of. Zenke et al.'s
    code does the same (``unreg_grads``, the gradient of the loss without the regulariser, in
    ``ganguli-lab/pathint``); van de Ven et al.'s implementation uses the gradient of the whole loss,
    penalty included. Biases are consolidated like weights, as in both.

    Runs with a consolidation signal of their own (``plan.own_signal``; ``consolidation_signal`` of
    :class:`~lib.model.SynapseConfig`) modulate the learning rate by :math:`1 - s` instead of :math:`1 - p`.
    """
    if plan.stochastic:
        release = release_probabilities(probs, hp) if plan.ghost else [None] * len(probs)
        transmitted, scales = release_masks(weights, probs, release, mask)
    else:
        transmitted, scales = weights, None
    logits, inputs = mlp_forward(x, transmitted, biases)
    loss, dlogits = cross_entropy(logits, y)
    grads_w, grads_b, _ = mlp_backward(dlogits, inputs, transmitted)
    scaled = {"all": 1.0, "none": 0.0, "mixed": hp["scaled"]}[plan.scaled]
    decay = hp["weight_decay"] if plan.weight_decay else 0.0
    if plan.adam:
        state["adam_step"][0] += 1
    for i in range(len(weights)):
        g = grads_w[i] * scales[i] if scales is not None else grads_w[i]  # dL/d(wbar) = (r/p) dL/dw
        g_bias = grads_b[i]
        task_g, task_g_bias = g, g_bias  # the gradient of the task's loss alone (SI's path integral)
        if plan.ewc:  # gradient of the EWC penalty, lambda (A w - B) (StochasticMLP.end_task)
            g = g + hp["ewc_lambda"] * (state["fisher_w"][i] * weights[i] - state["anchor_w"][i])
            g_bias = g_bias + hp["bias_ewc_lambda"] * (state["fisher_b"][i] * biases[i] - state["anchor_b"][i])
        if plan.si:  # gradient of the SI penalty, 2 c Omega (theta - theta*)
            g = g + 2 * hp["si_c"] * state["si_importance_w"][i] * (weights[i] - state["si_anchor_w"][i])
            g_bias = g_bias + 2 * hp["bias_si_c"] * state["si_importance_b"][i] * (biases[i] - state["si_anchor_b"][i])
            before = weights[i].clone()
            before_bias = biases[i].clone() if plan.learn_bias else None
        p = probs[i]
        if plan.adam:
            adam_step(weights[i], g, state["m_w"][i], state["v_w"][i], state["adam_step"][0], lr=hp["lr"],
                      weight_decay=decay, betas=ADAM_BETAS, eps=ADAM_EPS)
            if plan.learn_bias:
                adam_step(biases[i], g_bias, state["m_b"][i], state["v_b"][i], state["adam_step"][0],
                          lr=hp["bias_lr"], weight_decay=hp["bias_decay"], betas=ADAM_BETAS, eps=ADAM_EPS)
        else:
            signal = torch.where(hp["own_signal"] > 0, state["signal_w"][i], p) if plan.own_signal else p
            factor = learning_rate_factor(signal, modulation=hp["lr_modulation"], p_max=hp["p_max"]) if plan.lr_modulation else None
            sgd_step(weights[i], g, lr=hp["lr"], weight_decay=decay, lr_factor=factor)
            if plan.learn_bias:
                sgd_step(biases[i], g_bias, lr=hp["bias_lr"], weight_decay=hp["bias_decay"])
        if plan.si:
            accumulate_path_integral(state["si_path_w"][i], task_g, before, weights[i])
            if plan.learn_bias:
                accumulate_path_integral(state["si_path_b"][i], task_g_bias, before_bias, biases[i])
        if plan.learn_p:
            new = update_release_probability(
                p.clone() if plan.mixed_p else p, g, p_up=hp["p_up"], p_down=hp["p_down"], g_lim=hp["g_lim"],
                p_min=hp["p_min"], p_max=hp["p_max"], p_freeze=hp["p_freeze"] if plan.freeze else None,
                scaled=scaled,
            )
            if plan.mixed_p:
                p.copy_(torch.where(hp["learn_p"] > 0, new, p))
    return loss


def train_step(net: StochasticMLP, x: Tensor, y: Tensor, plan: StepPlan | None = None, compile: bool = False) -> Tensor:
    """One SGD + release-probability step of every run on its own mini-batch; returns the loss ``(R,)``.

    ``x`` is ``(R, B, in)``, ``y`` ``(R, B)``. With ``compile=True`` the step runs through
    :func:`torch.compile`, which fuses the element-wise work of eqs. 4-5 into a few loops (several
    times faster on the CPU; :func:`compiled_or_eager`).
    """
    plan = plan or StepPlan.of(net)
    mask = net.next_mask() if plan.stochastic else None
    args = (plan, net.weights, net.biases, net.probs, mask, x, y, net.hp, net.state)
    return compiled_or_eager(_step, *args, compile=compile)


class Sampler(Protocol):
    """Where an epoch's mini-batches come from: ``(task, epoch, generators) -> (x, y, order)``.

    ``order`` is ``(R, n)``: the indices into ``x`` and ``y`` that run r visits, in its order.
    """

    def __call__(self, task: int, epoch: int, generators: Sequence[torch.Generator]) -> tuple[Tensor, Tensor, Tensor]: ...

    def examples(self, task: int) -> int:
        """Examples one epoch of ``task`` visits."""


class ShuffledEpochs:
    """Each epoch visits the task's whole training set in a fresh random order per run."""

    def __init__(self, tasks: Sequence[Task]):
        self.tasks = tasks

    def __call__(self, task: int, epoch: int, generators: Sequence[torch.Generator]) -> tuple[Tensor, Tensor, Tensor]:
        t = self.tasks[task]
        order = torch.stack([torch.randperm(t.train_x.shape[0], generator=g, device=g.device) for g in generators])
        return t.train_x, t.train_y, order

    def examples(self, task: int) -> int:
        return self.tasks[task].train_x.shape[0]


@dataclass
class Evaluation:
    """Test metrics per run (arrays of shape ``(R,)``)."""

    accuracy: np.ndarray
    mutual_information: np.ndarray
    activity: np.ndarray
    single_pass_accuracy: np.ndarray


@torch.no_grad()
def evaluate(
    net: StochasticMLP, x: Tensor, y: Tensor, *, n_samples: int = 10, mask_batch: int = 100, compile: bool = False
) -> Evaluation:
    """Accuracy, mutual information (bits) and activity energy of every run on one test set.

    As in the authors' code (their ``lib/metric.py``): each of ``n_samples`` stochastic passes draws one release mask
    per ``mask_batch`` consecutive test examples; accuracy is the argmax of the softmax averaged over
    the passes, :math:`\\frac1N\\sum_n [\\arg\\max_k \\frac1S\\sum_s q_s(k|x_n) = y_n]`;
    ``single_pass_accuracy`` is the accuracy of each pass alone, averaged over the passes,
    :math:`\\frac1S\\sum_s \\frac1N\\sum_n [\\arg\\max_k q_s(k|x_n) = y_n]` (the ``test_mc`` inference of
    the BGD reference code, ``igolan/bgd``); the mutual information uses the soft confusion matrix of a single pass; the activity
    is the summed post-ReLU activation of all hidden units per example, averaged over passes and
    examples (Appendix). Every run goes through the same passes, deterministic ones too, so that a
    run's numbers do not depend on the runs evaluated with it. Masks come from the runs' evaluation
    streams, so evaluation never changes the course of training; ``compile`` draws them with a
    compiled kernel (the same bits, faster). A network without stochastic runs computes its
    (identical) pass once and adds it ``n_samples`` times: the same sums, in the same order, at a
    tenth of the cost.
    """
    x, y = x.to(net.device), y.to(net.device)
    n_classes = net.sizes[-1]
    chunk = mask_batch
    prob_sum = torch.zeros(net.n_runs, x.shape[0], n_classes, device=net.device)
    correct = torch.zeros(net.n_runs, device=net.device)  # summed over passes and examples
    activity = torch.zeros(net.n_runs, device=net.device)
    confusion = torch.zeros(net.n_runs, n_classes, n_classes, device=net.device)
    repeat = not getattr(net, "stochastic", True)
    first_pass: list[tuple[Tensor, Tensor]] = []  # (probabilities, activity) per chunk, when repeated
    for s in range(n_samples):
        for k, start in enumerate(range(0, x.shape[0], chunk)):
            if repeat and s > 0:
                probs, active = first_pass[k]
            else:
                logits, inputs = net.sample_pass(x[start:start + chunk], compile=compile)
                probs, active = torch.softmax(logits, dim=-1), sum(h.sum((1, 2)) for h in inputs[1:])
                if repeat:
                    first_pass.append((probs, active))
            prob_sum[:, start:start + chunk] += probs
            correct += (probs.argmax(-1) == y[start:start + chunk]).sum(1)
            activity += active
            if s == 0:
                confusion += soft_confusion(probs, y[start:start + chunk], n_classes)
    accuracy = (prob_sum.argmax(-1) == y).float().mean(1)
    return Evaluation(
        accuracy=accuracy.cpu().numpy(),
        mutual_information=mutual_information(confusion).cpu().numpy(),
        activity=(activity / (n_samples * x.shape[0])).cpu().numpy(),
        single_pass_accuracy=(correct / (n_samples * x.shape[0])).cpu().numpy(),
    )


@dataclass
class History:
    """What was measured during :func:`fit`, with the run axis first.

    ``eval_points[e] = (task, epoch)`` is when evaluation ``e`` was made (after that epoch of that
    task, both counted from 0). ``accuracy``, ``mutual_information``, ``activity`` and
    ``single_pass_accuracy`` are ``(R, E, T)`` (every task's test set at every evaluation; see
    :class:`Evaluation`), ``energy``, ``mean_p`` and
    ``frozen`` are ``(R, E)``, ``train_loss`` is ``(R, total epochs)``.
    """

    runs: list[SynapseConfig]
    eval_points: list[tuple[int, int]] = field(default_factory=list)
    accuracy: np.ndarray | None = None
    mutual_information: np.ndarray | None = None
    activity: np.ndarray | None = None
    single_pass_accuracy: np.ndarray | None = None
    energy: np.ndarray | None = None
    mean_p: np.ndarray | None = None
    frozen: np.ndarray | None = None
    train_loss: np.ndarray | None = None
    seconds: float = 0.0


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def fit(
    net: StochasticMLP,
    benchmark: Benchmark,
    *,
    epochs: int = 10,
    batch_size: int = 100,
    eval_every: EvalEvery = "epoch",
    eval_samples: int = 10,
    eval_batch: int = 100,
    progress: bool | None = None,
    on_epoch: Callable[[StochasticMLP, int, int], None] | None = None,
    compile: bool | None = None,
    step: Callable[[Tensor, Tensor, bool], Tensor] | None = None,
    eval_tasks: Sequence[Task] | None = None,
    sampler: Sampler | None = None,
    drop_last: bool = True,
    eval_unseen: bool = True,
) -> History:
    """Train every run of ``net`` on the tasks of ``benchmark`` in order, ``epochs`` epochs each.

    Each epoch visits the task's training set in a fresh random order per run and drops the last
    incomplete mini-batch (as the authors' loaders do); with ``drop_last=False`` it trains on that
    smaller batch too (as the BGD reference code's loaders do). After every epoch (``eval_every="epoch"``),
    every task (``"task"``) or only at the end (``"end"``), all tasks' test sets are evaluated with
    :func:`evaluate` (``"never"`` skips evaluation, e.g. to time training alone). With
    ``eval_unseen=False`` an evaluation during task :math:`t` covers only the test sets of tasks
    :math:`1..t` (``eval_tasks`` must then be the training tasks) and records NaN for the others:
    a long sequence of :math:`T` tasks then costs :math:`T(T+1)/2` evaluations instead of :math:`T^2`,
    and the tasks evaluated get the numbers they get when every task is.
    ``on_epoch(net, task, epoch)`` is called after every epoch (e.g. to record histograms).
    ``progress`` shows a progress bar on a terminal, one line per epoch on stderr elsewhere (default:
    only on a terminal). ``compile`` fuses the training step and the evaluation masks with
    :func:`torch.compile` (default: :func:`lib.compilation.compile_worthwhile` for the run's number
    of steps; the environment
    variable ``PRESYN_COMPILE=0`` switches it off).

    ``step(x, y, compile)`` replaces the presynaptic training step by another learning rule (e.g.
    :meth:`lib.bgd.BayesianMLP.train_step`), compiled or not as decided here for every rule;
    ``eval_tasks`` are the test sets evaluated (default: the benchmark's tasks; joint training
    trains on one merged task and is evaluated on the original ones); ``sampler(task, epoch,
    generators)`` returns the training tensors and each run's order of examples for one epoch
    (default: the task's training set in a fresh random order per run, see :class:`ShuffledEpochs`).
    After each task, ``net.end_task`` sees its training set (EWC's Fisher information; SI's importance).
    Once every run of ``net`` has diverged for good (``net.diverged_runs()``), the remaining training
    steps are skipped and their losses recorded as NaN; evaluations go on and record what they would have.
    """
    _check_positive_int("epochs", epochs)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("eval_samples", eval_samples)
    _check_positive_int("eval_batch", eval_batch)
    if eval_every not in ("epoch", "task", "end", "never"):
        raise ValueError(f"eval_every must be 'epoch', 'task', 'end' or 'never', got {eval_every!r}")
    if not eval_unseen and eval_tasks is not None:
        raise ValueError("eval_unseen=False evaluates the tasks trained so far: it needs eval_tasks=None")
    tasks = benchmark.to(net.device).tasks
    eval_tasks = tasks if eval_tasks is None else tuple(t.to(net.device) for t in eval_tasks)
    sampler = ShuffledEpochs(tasks) if sampler is None else sampler
    if benchmark.n_classes != net.sizes[-1]:
        raise ValueError(f"benchmark {benchmark.name} has {benchmark.n_classes} classes, network has {net.sizes[-1]} outputs")
    for t in tasks:
        if t.train_x.shape[1] != net.sizes[0]:
            raise ValueError(f"task {t.name} has {t.train_x.shape[1]} inputs, network expects {net.sizes[0]}")
        if t.train_x.shape[0] < batch_size:
            raise ValueError(f"task {t.name} has {t.train_x.shape[0]} training examples, fewer than batch_size={batch_size}")

    plan = StepPlan.of(net)
    def steps_in(examples: int) -> int:
        return examples // batch_size if drop_last else -(-examples // batch_size)

    total_steps = epochs * sum(steps_in(sampler.examples(t)) for t in range(len(tasks)))
    if compile is None:
        compile = compile_worthwhile(total_steps)
    if step is None:
        def step(x: Tensor, y: Tensor, compile: bool) -> Tensor:
            return train_step(net, x, y, plan, compile)
    hist = History(runs=list(net.runs))
    records: dict[str, list] = {k: [] for k in ("accuracy", "mutual_information", "activity", "single_pass_accuracy",
                                                "energy", "mean_p", "frozen")}
    losses = []
    warned = False
    halted = False  # every run diverged for good (net.diverged_runs): the remaining steps change nothing
    show = sys.stderr.isatty() if progress is None else progress
    lines = show and not sys.stderr.isatty()  # a log file: one line per epoch instead of a bar
    bar = tqdm(total=len(tasks) * epochs, disable=not show or lines, desc=benchmark.name, unit="epoch")
    start_time = time.perf_counter()
    for t, task in enumerate(tasks):
        for epoch in range(epochs):
            if halted:
                losses.append(np.full(net.n_runs, np.nan, dtype=np.float32))
            else:
                train_x, train_y, order = sampler(t, epoch, net.generators)
                n_steps = steps_in(order.shape[1])
                loss_sum = torch.zeros(net.n_runs, device=net.device)
                for s in range(n_steps):
                    idx = order[:, s * batch_size:(s + 1) * batch_size]
                    loss_sum += step(train_x[idx], train_y[idx], compile)
                losses.append((loss_sum / n_steps).cpu().numpy())
            diverged = [r for r in range(net.n_runs) if not np.isfinite(losses[-1][r])]
            if diverged and not warned:
                warnings.warn(f"run(s) {diverged} diverged (non-finite loss) in task {t}, epoch {epoch}; "
                              "lower the learning rate", RuntimeWarning, stacklevel=2)
                warned = True
            if not halted and bool(net.diverged_runs().all()):
                halted = True
                print(f"{benchmark.name}: every run's parameters are NaN after task {t + 1}, epoch {epoch + 1}; "
                      "its remaining training steps are skipped (they would change nothing), evaluations are not",
                      file=sys.stderr, flush=True)
            last_epoch = epoch == epochs - 1
            if eval_every == "epoch" or (eval_every == "task" and last_epoch) or (
                eval_every == "end" and last_epoch and t == len(tasks) - 1
            ):
                evals = [evaluate(net, u.test_x, u.test_y, n_samples=eval_samples, mask_batch=eval_batch, compile=compile)
                         for u in (eval_tasks if eval_unseen else eval_tasks[: t + 1])]
                if not eval_unseen:  # the next evaluations draw the masks they draw when every task is evaluated
                    net.skip_evaluation_passes(sum(eval_samples * -(-u.test_x.shape[0] // eval_batch)
                                                   for u in eval_tasks[t + 1:]))
                hist.eval_points.append((t, epoch))
                for key in ("accuracy", "mutual_information", "activity", "single_pass_accuracy"):
                    values = np.stack([getattr(e, key) for e in evals], axis=1)
                    row = np.full((net.n_runs, len(eval_tasks)), np.nan, dtype=values.dtype)
                    row[:, : values.shape[1]] = values
                    records[key].append(row)
                records["energy"].append(net.synaptic_energy().cpu().numpy())
                records["mean_p"].append(net.mean_release_probability().cpu().numpy())
                records["frozen"].append(net.frozen_fraction().cpu().numpy())
                bar.set_postfix(acc=f"{records['accuracy'][-1][:, : t + 1].mean():.3f}")
            if on_epoch is not None:
                on_epoch(net, t, epoch)
            bar.update()
            if lines:
                print(f"{benchmark.name}: task {t + 1}/{len(tasks)}, epoch {epoch + 1}/{epochs} done, "
                      f"{(time.perf_counter() - start_time) / 60:.1f} min", file=sys.stderr, flush=True)
        net.end_task(task.train_x, task.train_y)
    bar.close()
    for key, values in records.items():
        if values:
            setattr(hist, key, np.stack(values, axis=1))
    hist.train_loss = np.stack(losses, axis=1)
    hist.seconds = time.perf_counter() - start_time
    return hist
