"""Single-run training speed, side by side in one run: ours, the 2026-11-28 release, the authors'
style of trainer, the product floor, and the generic step against the hand-written one.

For each size (p = 23, d_mlp = 512 and p = 97, d_mlp = 1024; the grokking preset with weight
decay 1: AdamW, a 75 % train split, train and test metrics every step) it times, in ``--rounds``
interleaved rounds, and reports the least over the rounds (noise only ever adds time):

- ours: :func:`mechinterp_modadd.training.train` in a fresh interpreter on the CPU (ms per step
  over a ``--steps`` run, set-up included, after a warm-up run of 5 steps in the same interpreter);
- release: the same script against the release of 2026-11-28 (commit bbb38e5), extracted with
  ``git archive`` into a temporary folder (or ``--release DIR``) and imported from there;
- step: our engine's step alone (:class:`~mechinterp_modadd.training.stack.Stack`: batched step,
  optimizer update, metric slots), ms per step, in this process;
- floor: the five matrix products of one step on the p(p + 1)/2 symmetry-reduced rows (forward
  ``X W_in^T`` and ``post W_out^T``; backward ``dlogits^T post``, ``dlogits W_out``, ``dpre^T X``),
  each with torch's default BLAS and with oneDNN, the faster counted;
- authors: :class:`AuthorsStyleStep`, a plain PyTorch step doing per step what the paper authors'
  trainer does (documented op by op below), on our thread count;
- generic / hand: the generic ``torch.func`` step (:meth:`~mechinterp_modadd.training.stack.Stack.use_generic_step`)
  against the MLP's hand-written step on the same stack, time per step.

With ``--busy`` every round also times ours with a busy neighbour: a process spinning on one core
(pinned to core 0 where the OS allows) for the duration of that timing.

Targets (issue 19), each printed as met / NOT met: authors / ours >= 6 at p = 97 and >= 4 at
p = 23; ours not slower than the release at either size (ours / release <= 1); with ``--busy``
ours busy / ours quiet <= 2; at p = 97 our step <= 1.5 x the floor. Timings on a shared machine
are noisy: run it on a quiet machine for the targets.

    python benchmarks/bench_train.py [--steps N] [--rounds R] [--busy] [--release DIR] [--cpu-time]
    python benchmarks/bench_train.py --steps 20 --rounds 1 --busy      # a quick end-to-end check

The wall clock is used by default (the p = 97 step runs on 2 threads); ``--cpu-time`` times with
process CPU time instead (which bills every thread, and leaves out time slices given to other
processes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mechinterp_modadd.data import all_pairs, random_split
from mechinterp_modadd.runtime import auto_threads, step_flop, thread_scope
from mechinterp_modadd.training import get_train_family, preset
from mechinterp_modadd.training.stack import METRIC_BLOCK, Stack

CLOCK = time.perf_counter
REPO = Path(__file__).resolve().parents[1]
RELEASE = "bbb38e5"
SIZES = [(23, 512), (97, 1024)]

#: the script timed in a fresh interpreter, against our package or the release's (PYTHONPATH)
CHILD = r"""
import json, sys, time
from mechinterp_modadd.training import preset, train
p, d_mlp, steps, clock = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
clk = time.process_time if clock == "cpu" else time.perf_counter
cfg = preset("grokking", p=p, d_mlp=d_mlp, steps=steps, weight_decay=1.0)
train(cfg.replace(steps=5), progress=False)
t = clk()
train(cfg, progress=False)
print(json.dumps({"ms": (clk() - t) / steps * 1e3, "package": __import__("mechinterp_modadd").__file__}))
"""


#: the paper authors' own trainer (``src/nnTrainer.py`` of their repository), timed in a fresh
#: interpreter: their ``Trainer`` on the same settings as ours (grokking preset, weight decay 1, a 75 %
#: split, ReLU, one-hot, AdamW with their betas and warm-up), ``do_a_training_step`` per step (their
#: four full-batch forward passes, norms read to the host, AdamW, scheduler). Their modules import
#: wandb and matplotlib for logging and plots only; empty stand-ins are put on the path for those.
AUTHORS_CHILD = r"""
import json, os, sys, tempfile, time
src, stub = sys.argv[1], sys.argv[2]
p, d_mlp, steps, threads, clock = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
sys.path[:0] = [src, os.path.dirname(src), stub]
os.chdir(tempfile.mkdtemp())  # their Trainer writes saved_models/ into the working folder
import torch
torch.set_num_threads(threads)
from utils import Config
from nnTrainer import Trainer
clk = time.process_time if clock == "cpu" else time.perf_counter
cfg = Config({"data": {"p": p, "d_vocab": None, "fn_name": "add", "frac_train": 0.75, "batch_style": "full"},
              "model": {"d_model": None, "d_mlp": d_mlp, "act_type": "ReLU", "embed_type": "one_hot",
                        "init_type": "random", "init_scale": 0.1, "freq_num": None},
              "training": {"num_epochs": steps, "lr": 1e-4, "weight_decay": 1.0, "optimizer": "AdamW",
                           "stopping_thresh": -1, "save_models": False, "save_every": 10 ** 9, "seed": 0}})
trainer = Trainer(cfg, use_wandb=False)
for e in range(5):
    trainer.do_a_training_step(e)
t = clk()
for e in range(steps):
    trainer.do_a_training_step(e)
print(json.dumps({"ms": (clk() - t) / steps * 1e3}))
"""


class AuthorsStyleStep:
    """One training step as the paper authors' trainer performs it, in plain PyTorch.

    Per step, in order:

    1. ``zero_grad``; forward the train pairs (ordered pairs, one-hot ``e_x + e_y`` rows times
       ``W_in^T``, ReLU, times ``W_out^T``) and take the float32 cross-entropy mean;
    2. forward the test pairs under ``no_grad`` for the test loss (float32 cross-entropy mean);
    3. forward the train pairs again under ``no_grad`` for the train accuracy (argmax == label);
    4. forward the test pairs again under ``no_grad`` for the test accuracy;
    5. ``backward`` of the train loss;
    6. the gradient norm and the parameter norm, each read to the host with ``.item()``;
    7. ``AdamW(lr, betas=(0.9, 0.98), weight_decay)`` step and a ``LambdaLR`` linear warm-up
       over 10 steps (``min(1, (t + 1) / 10)``), also read every step (``get_last_lr``);
    8. the four metrics read to the host (``.item()``), as a logger would.
    """

    def __init__(self, p: int, d_mlp: int, train_fraction: float = 0.75, lr: float = 1e-4,
                 weight_decay: float = 1.0, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.W_in = torch.nn.Parameter(0.1 * torch.randn(d_mlp, p, generator=g) / p ** 0.5)
        self.W_out = torch.nn.Parameter(0.1 * torch.randn(p, d_mlp, generator=g) / p ** 0.5)
        split = random_split(p, train_fraction, seed)
        pairs = all_pairs(p)
        onehot = (F.one_hot(pairs[:, 0], p) + F.one_hot(pairs[:, 1], p)).float()
        labels = (pairs[:, 0] + pairs[:, 1]) % p
        self.x_tr, self.y_tr = onehot[split.train_mask], labels[split.train_mask]
        self.x_te, self.y_te = onehot[~split.train_mask], labels[~split.train_mask]
        self.opt = torch.optim.AdamW([self.W_in, self.W_out], lr=lr, betas=(0.9, 0.98),
                                     weight_decay=weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda t: min(1.0, (t + 1) / 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_in.T) @ self.W_out.T

    def __call__(self) -> dict[str, float]:
        self.opt.zero_grad()
        train_loss = F.cross_entropy(self.forward(self.x_tr), self.y_tr)          # 1
        with torch.no_grad():
            test_loss = F.cross_entropy(self.forward(self.x_te), self.y_te)       # 2
            train_acc = (self.forward(self.x_tr).argmax(-1) == self.y_tr).float().mean()  # 3
            test_acc = (self.forward(self.x_te).argmax(-1) == self.y_te).float().mean()   # 4
        train_loss.backward()                                                     # 5
        grad_norm = torch.sqrt(sum((q.grad ** 2).sum() for q in (self.W_in, self.W_out))).item()  # 6
        param_norm = torch.sqrt(sum((q.detach() ** 2).sum() for q in (self.W_in, self.W_out))).item()
        self.opt.step()                                                           # 7
        self.sched.step()
        lr = self.sched.get_last_lr()[0]
        return {"train_loss": train_loss.item(), "test_loss": test_loss.item(),   # 8
                "train_accuracy": train_acc.item(), "test_accuracy": test_acc.item(),
                "grad_norm": grad_norm, "param_norm": param_norm, "lr": lr}


def _best(fn, reps: int) -> float:
    """Least ms per call of ``fn`` over two timed blocks of ``reps`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(2):
        t = CLOCK()
        for _ in range(reps):
            fn()
        best = min(best, (CLOCK() - t) / reps)
    return best * 1e3


def child_ms(package_root: Path, p: int, d_mlp: int, steps: int) -> float:
    """ms per step of ``train`` in a fresh interpreter importing the package at ``package_root``."""
    env = {**os.environ, "PYTHONPATH": str(package_root), "CUDA_VISIBLE_DEVICES": ""}  # the release has no GPU path
    out = subprocess.run([sys.executable, "-c", CHILD, str(p), str(d_mlp), str(steps),
                          "cpu" if CLOCK is time.process_time else "wall"],
                         env=env, cwd=package_root, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench_train: the timed run under {package_root} failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(res["package"]).resolve().is_relative_to(package_root.resolve()):
        raise SystemExit(f"bench_train: {package_root} was not the package imported ({res['package']})")
    return float(res["ms"])


def authors_real_ms(src: Path, p: int, d_mlp: int, steps: int, threads: int) -> float:
    """ms per step of the authors' own trainer (``AUTHORS_CHILD``) from their ``src`` folder."""
    with tempfile.TemporaryDirectory() as stub:
        (Path(stub) / "wandb.py").write_text("")
        (Path(stub) / "matplotlib").mkdir()
        (Path(stub) / "matplotlib" / "__init__.py").write_text("")
        (Path(stub) / "matplotlib" / "pyplot.py").write_text("")
        out = subprocess.run([sys.executable, "-c", AUTHORS_CHILD, str(src), stub, str(p), str(d_mlp), str(steps),
                              str(threads), "cpu" if CLOCK is time.process_time else "wall"],
                             env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True,
                             check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench_train: the authors' trainer under {src} failed:\n{out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ms"])


def baseline_ms(p: int, d_mlp: int, reps: int, threads: int) -> float:
    """ms per step of :class:`AuthorsStyleStep` on ``threads`` threads (our thread count)."""
    step = AuthorsStyleStep(p, d_mlp)
    with thread_scope(threads):
        return _best(step, reps)


def floor_ms(p: int, d_mlp: int, reps: int, threads: int) -> float:
    """ms of the five matrix products of one of our steps (symmetry-reduced rows), each timed with
    torch's default BLAS and, where this torch has it, oneDNN (:func:`onednn_linear`), the faster
    of the two counted: the floor is what the machine's fastest available product costs."""
    from mechinterp_modadd.training.family_mlp import onednn_linear

    n = p * (p + 1) // 2
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(n, p, generator=g) < 2 / p).float()
    W_in = torch.randn(d_mlp, p, generator=g)
    W_out = torch.randn(p, d_mlp, generator=g)
    post = torch.rand(n, d_mlp, generator=g)
    dpre = torch.rand(n, d_mlp, generator=g)
    dlogits = torch.randn(n, p, generator=g) * 0.01
    blas = [lambda: X @ W_in.T,          # forward: hidden pre-activations
            lambda: post @ W_out.T,      # forward: logits
            lambda: dlogits.T @ post,    # grad of W_out
            lambda: dlogits @ W_out,     # grad of the hidden layer
            lambda: dpre.T @ X]          # grad of W_in
    lin = onednn_linear()
    onednn = [] if lin is None else [lambda: lin(X, W_in), lambda: lin(post, W_out),
                                       lambda: lin(dlogits.T, post.T), lambda: lin(dlogits, W_out.T),
                                       lambda: lin(dpre.T, X.T)]
    with thread_scope(threads):
        return sum(min(_best(f, reps) for f in fs) for fs in zip(blas, onednn or blas, strict=True))


def _stack(p: int, d_mlp: int, steps: int) -> Stack:
    cfg = preset("grokking", p=p, d_mlp=d_mlp, steps=steps, weight_decay=1.0)
    fam = get_train_family(cfg.family)
    st = Stack([cfg], [fam.init_params(cfg)], [None], 0, torch.device("cpu"))
    st.schedule(0, st.lr_table(0, 100 * steps + 100))
    return st


def step_ms(p: int, d_mlp: int, reps: int, threads: int, generic: bool = False) -> float:
    """ms per step of the engine with one run: the batched step (hand-written, or the generic one),
    the AdamW update and the metric slots (reduced every METRIC_BLOCK steps)."""
    st = _stack(p, d_mlp, reps)
    if generic:
        st.use_generic_step()
    t = [0]

    def one():
        st.step_grads()
        st.update(t[0])
        t[0] += 1
        if st.pending == METRIC_BLOCK:
            st.take_metrics()

    with thread_scope(threads), torch.no_grad():
        return _best(one, reps)


@contextlib.contextmanager
def busy_neighbour():
    """A process spinning on one core (core 0 where affinity can be set) while the block runs."""
    code = ("import os\ntry:\n    os.sched_setaffinity(0, {0})\nexcept (AttributeError, OSError):\n    pass\n"
            "while True:\n    pass\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.5)  # let it start spinning
        yield
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def release_tree(path: str | None):
    """The release's source: ``path`` if given, else ``git archive RELEASE`` into a temporary folder."""
    if path:
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="modadd_release_") as tmp:
        arch = subprocess.run(["git", "-C", str(REPO), "archive", RELEASE, "mechinterp_modadd"],
                              capture_output=True, check=False)
        if arch.returncode != 0:
            raise SystemExit(f"bench_train: git archive {RELEASE} failed ({arch.stderr.decode()[-300:]}); "
                             f"pass --release DIR (a checkout of {RELEASE})")
        subprocess.run(["tar", "-x", "-C", tmp], input=arch.stdout, check=True)
        yield Path(tmp)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    global CLOCK
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None,
                    help="steps of each timed run (default 1000 at p=23, 40 at p=97)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3); the least counts")
    ap.add_argument("--busy", action="store_true", help="also time ours with a busy neighbour on one core")
    ap.add_argument("--release", default=None, metavar="DIR",
                    help=f"a checkout of the release {RELEASE} (default: git archive into a temporary folder)")
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time instead of the wall clock")
    ap.add_argument("--authors-src", default=None, metavar="DIR",
                    help="the src/ folder of the paper authors' repository "
                         "(Y-Agent/modular-addition-feature-learning): "
                         "also time their own trainer, and judge the speed-up targets against it")
    args = ap.parse_args()
    if args.cpu_time:
        CLOCK = time.process_time
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads by default; "
          f"clock: {'process CPU time' if args.cpu_time else 'wall'}; {args.rounds} rounds, least counts")
    targets: list[tuple[str, bool]] = []
    with release_tree(args.release) as rel:
        for p, d_mlp in SIZES:
            steps = args.steps or (1000 if p == 23 else 40)
            threads = auto_threads(step_flop(p, d_mlp))
            rows: dict[str, list[float]] = {k: [] for k in ("ours", "release", "busy", "step", "floor", "authors",
                                                           "real", "generic", "hand")}
            for r in range(args.rounds):
                rows["ours"].append(child_ms(REPO, p, d_mlp, steps))
                rows["release"].append(child_ms(rel, p, d_mlp, steps))
                if args.busy:
                    with busy_neighbour():
                        rows["busy"].append(child_ms(REPO, p, d_mlp, steps))
                reps = max(min(steps, 200), 10)
                rows["step"].append(step_ms(p, d_mlp, reps, threads))
                rows["floor"].append(floor_ms(p, d_mlp, reps, threads))
                rows["authors"].append(baseline_ms(p, d_mlp, max(reps // 10, 5), threads))
                if args.authors_src:
                    rows["real"].append(authors_real_ms(Path(args.authors_src).resolve(), p, d_mlp,
                                                        max(steps // 5, 20), threads))
                rows["hand"].append(step_ms(p, d_mlp, max(reps // 4, 5), threads))
                rows["generic"].append(step_ms(p, d_mlp, max(reps // 4, 5), threads, generic=True))
                print(f"  round {r + 1}, p = {p}: " + "  ".join(f"{k} {v[-1]:.3f}" for k, v in rows.items() if v),
                      flush=True)
            b = {k: min(v) for k, v in rows.items() if v}
            print(f"p = {p}, d_mlp = {d_mlp}, {threads} thread(s), ms/step (least of {args.rounds}):")
            print(f"  ours (train, set-up included) {b['ours']:.3f}   release {b['release']:.3f}   "
                  f"ours / release {b['ours'] / b['release']:.2f}")
            print(f"  our step {b['step']:.3f}   floor {b['floor']:.3f}   step / floor {b['step'] / b['floor']:.2f}")
            print(f"  authors-style step {b['authors']:.2f}   authors / ours {b['authors'] / b['ours']:.1f}x "
                  f"(authors / our step {b['authors'] / b['step']:.1f}x)")
            print(f"  generic step {b['generic']:.3f}   hand-written {b['hand']:.3f}   generic / hand "
                  f"{b['generic'] / b['hand']:.2f}")
            need = 6.0 if p == 97 else 4.0
            if "real" in b:
                print(f"  the authors' own trainer {b['real']:.2f}   theirs / ours {b['real'] / b['ours']:.1f}x")
                targets.append((f"p = {p}: the authors' trainer / ours >= {need:g} ({b['real'] / b['ours']:.1f})",
                                b["real"] / b["ours"] >= need))
            else:
                targets.append((f"p = {p}: authors-style step / ours >= {need:g} ({b['authors'] / b['ours']:.1f}; "
                                f"pass --authors-src to judge against their own trainer)",
                                b["authors"] / b["ours"] >= need))
            targets.append((f"p = {p}: ours not slower than the release (ours / release "
                            f"{b['ours'] / b['release']:.2f} <= 1)", b["ours"] <= b["release"]))
            if args.busy:
                print(f"  ours with a busy neighbour {b['busy']:.3f}   busy / quiet {b['busy'] / b['ours']:.2f}")
                targets.append((f"p = {p}: busy neighbour / quiet <= 2 ({b['busy'] / b['ours']:.2f})",
                                b["busy"] <= 2 * b["ours"]))
            if p == 97:
                targets.append((f"p = 97: step / floor <= 1.5 ({b['step'] / b['floor']:.2f})",
                                b["step"] <= 1.5 * b["floor"]))
    print("targets:")
    for text, ok in targets:
        print(f"  {_verdict(ok):>7}  {text}")


if __name__ == "__main__":
    main()
