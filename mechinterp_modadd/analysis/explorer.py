"""Everything the interactive explorer page shows, computed once (pure computation, no HTML).

:func:`explorer_data` reads a checkpoint file or a run folder and returns an
:class:`ExplorerData`: plain float64 / integer numpy arrays that the page
(:mod:`mechinterp_modadd.pages.explorer`) only encodes and draws. Four parts:

- **neurons** (the final checkpoint): theta_m and xi_m, their Fourier magnitudes alpha_m^k and
  beta_m^k for k = 1..K, and at the dominant frequency k* the cosine-fit parameters
  theta_m[j] ~ in_dc_m / sqrt(p) + alpha_m cos(w_k* j + phi_m) (same for xi with beta, psi),
  the phase offset D_m = wrap(psi_m - 2 phi_m) and the vote weight alpha^2 beta;
- **pairs** (the final checkpoint): float64 logits f(a, b)[z] for every pair, and each neuron's
  signed contribution to the right answer's logit, W_out[z, m] * sigma(theta_m[a] + theta_m[b])
  with z = (a + b) mod p (these contributions sum to the logit of z: the network has no bias);
- **steps** (every checkpoint of a run; one step for a single file): which of the p^2 pairs are
  right (argmax of the logits equals (a + b) mod p), the row-normalised |Fourier coefficients|
  |<w, basis row>| / max over the row of W_in and W_out for a fixed set of neurons (ordered by
  their final k* and phase), and the neurons per dominant frequency;
- **ablation** (the final checkpoint, zero-ablation of ``mlp.hook_post``): for keep fractions
  f and sets S of frequency groups, the accuracy over all p^2 pairs when only the neurons of the
  groups in S are kept and, inside each group N_k, only its first round(f |N_k|) neurons in a
  seeded random order (nested: a neuron kept at f is kept at every larger f), averaged over
  ``ablation_draws`` orders. Every subset S of {1..K} is measured when K <= ``max_subset_k``
  (2^K - 1 sets); above that, all groups, each group alone and all groups but one.

Large problems are bounded, never silently truncated: pairs beyond ``max_pair_floats`` (p^2 M)
are a seeded sample (listed in ``pair_index``), heat-map rows beyond ``max_heatmap_neurons``
are a seeded sample (listed in ``heatmap_neurons``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import all_pairs
from ..errors import CheckpointError, InputError
from ..families import family_of
from ..fourier import basis_labels, fourier_basis
from ..runtime import compute_device, takes_device
from .ablation import ActivationTable, activation_table
from .base import to_jsonable
from .per_family import family_spectrum
from .views import input_output_weights

__all__ = ["ExplorerData", "explorer_data", "explorer_data_from_models", "group_sets",
           "DEFAULT_EXPLORER_FRACTIONS"]

#: keep fractions of the ablation panel (0.1, 0.2, ..., 1.0)
DEFAULT_EXPLORER_FRACTIONS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 11))


@dataclass(frozen=True)
class ExplorerData:
    """The precomputed content of the explorer page (see the module docstring for each array).

    Shapes (M = d_mlp, K = (p - 1) // 2, S = number of steps, P = number of stored pairs,
    H = heat-map rows, F = keep fractions, G = group sets):

    - neurons: ``theta``, ``xi`` [M, p]; ``alpha``, ``beta`` [M, K]; ``frequency`` [M] (k*,
      1-based); ``alpha_star``, ``beta_star``, ``phi``, ``psi``, ``D``, ``in_dc``, ``out_dc``,
      ``share``, ``vote`` [M];
    - pairs: ``pair_index`` [P] (a * p + b), ``logits`` [P, p], ``contributions`` [P, M];
    - steps: ``steps`` [S], ``correct`` [S, p^2] (bool), ``train_mask`` [p^2] or ``None``,
      ``train_accuracy``/``test_accuracy`` [S] (NaN where the set is empty), ``heatmap_neurons``
      [H], ``dft_in``/``dft_out`` [S, H, p] in [0, 1], ``counts`` [S, K];
    - ablation: ``keep_fractions`` [F], ``group_sets`` [G] (bit k-1 set = group k kept),
      ``ablation_accuracy`` [F, G].
    """

    source: str
    name: str
    p: int
    d_mlp: int
    activation: str
    final_step: int | None
    basis_labels: list[str]
    theta: np.ndarray
    xi: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    frequency: np.ndarray
    alpha_star: np.ndarray
    beta_star: np.ndarray
    phi: np.ndarray
    psi: np.ndarray
    D: np.ndarray
    in_dc: np.ndarray
    out_dc: np.ndarray
    share: np.ndarray
    vote: np.ndarray
    pair_index: np.ndarray
    logits: np.ndarray
    contributions: np.ndarray
    steps: list[int]
    correct: np.ndarray
    train_mask: np.ndarray | None
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    heatmap_neurons: np.ndarray
    dft_in: np.ndarray
    dft_out: np.ndarray
    counts: np.ndarray
    keep_fractions: np.ndarray
    group_sets: np.ndarray
    ablation_accuracy: np.ndarray
    ablation_draws: int
    seed: int
    notes: list[str] = field(default_factory=list)
    family: str = "mlp"
    #: transformer only (None otherwise): the embedding's Fourier spectrum at the first and the last
    #: checkpoint (step -> result) and the attention at '=' at the last (analysis.transformer_views)
    embedding_spectra: dict[int, Any] | None = None
    attention: Any = None

    @property
    def K(self) -> int:
        return (self.p - 1) // 2

    @property
    def is_run(self) -> bool:
        return len(self.steps) > 1

    def fit(self, neuron: int, layer: str = "in", j: np.ndarray | None = None) -> np.ndarray:
        """The cosine fit of theta_m (``layer="in"``) or xi_m (``"out"``) at points j:
        dc / sqrt(p) + amplitude cos(2 pi k* j / p + phase)."""
        if layer not in ("in", "out"):
            raise InputError(f"layer must be 'in' or 'out', got {layer!r}")
        j = np.arange(self.p, dtype=np.float64) if j is None else np.asarray(j, dtype=np.float64)
        m = int(neuron)
        dc, amp, ph = ((self.in_dc[m], self.alpha_star[m], self.phi[m]) if layer == "in"
                       else (self.out_dc[m], self.beta_star[m], self.psi[m]))
        return dc / math.sqrt(self.p) + amp * np.cos(2 * math.pi * int(self.frequency[m]) * j / self.p + ph)

    def pair_row(self, a: int, b: int) -> int:
        """Row of pair (a, b) in ``logits``/``contributions`` (InputError when not stored)."""
        if not (0 <= a < self.p and 0 <= b < self.p):
            raise InputError(f"pair ({a}, {b}) outside Z_{self.p}")
        hit = np.nonzero(self.pair_index == a * self.p + b)[0]
        if len(hit) == 0:
            raise InputError(f"pair ({a}, {b}) is not among the {len(self.pair_index)} stored pairs")
        return int(hit[0])

    def group_set_index(self, ks: list[int] | tuple[int, ...]) -> int:
        """Column of ``ablation_accuracy`` for the set of kept frequency groups ``ks``."""
        bits = sum(1 << (int(k) - 1) for k in set(ks))
        hit = np.nonzero(self.group_sets == bits)[0]
        if len(hit) == 0:
            raise InputError(f"group set {sorted(set(ks))} was not measured")
        return int(hit[0])

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (arrays as nested lists, NaN as null)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if self.embedding_spectra is not None:
            out["embedding_spectra"] = {str(k): v.to_dict() for k, v in self.embedding_spectra.items()}
        if self.attention is not None:
            out["attention"] = {**self.attention.to_dict(), "pattern": self.attention.pattern}
        return to_jsonable(out)


def group_sets(K: int, max_subset_k: int = 12) -> np.ndarray:
    """Bit masks of the frequency-group sets measured: every non-empty subset of {1..K} when
    K <= max_subset_k, else all groups, each group alone and all groups but one."""
    full = (1 << K) - 1
    if K <= max_subset_k:
        return np.arange(1, full + 1, dtype=np.int64)
    singles = [1 << i for i in range(K)]
    return np.array([full, *singles, *(full ^ s for s in singles)], dtype=np.int64)


def _logits64(model) -> torch.Tensor:
    """float64 logits [p^2, p] and post-activations [p^2, M] computed from the weights (the module's
    own float64 pass); for other families than the paper's MLP, from the neuron view."""
    if family_of(model).name != "mlp":
        view = family_of(model).neuron_view(model)
        return view.logits(), view.post
    with torch.no_grad():
        theta = model.effective_W_in().detach().to("cpu", torch.float64)
        W_out = model.mlp.W_out.detach().to("cpu", torch.float64)
        pairs = all_pairs(model.cfg.p)
        post = model.act_fn(theta[:, pairs[:, 0]].T + theta[:, pairs[:, 1]].T).double()
        return post @ W_out.T, post


def _table(model) -> tuple[ActivationTable, torch.Tensor | None]:
    """The activation table of the ablation panel and the logits no neuron carries: the paper MLP's
    table (unordered pairs, weighted; nothing else); for other families all p^2 ordered pairs from
    the neuron view, each of weight 1, and the view's ``rest`` [p^2, p] (an output bias, the
    transformer's path around its MLP), kept whole while neurons are ablated."""
    if family_of(model).name == "mlp":
        return activation_table(model), None
    view = family_of(model).neuron_view(model)
    pairs = all_pairs(view.p)
    if family_of(model).name == "transformer":  # its activation lives in the config, by name
        from ..transformer import TRANSFORMER_ACTIVATIONS

        act_fn = TRANSFORMER_ACTIVATIONS[model.cfg.act_fn]
    else:
        act_fn = model.act_fn
    table = ActivationTable(p=view.p, pairs=pairs, weight=torch.ones(pairs.shape[0], dtype=torch.float64),
                            labels=view.labels, pre=view.pre, post=view.post, W_out=view.W.T.contiguous(),
                            act_fn=act_fn, exact=True)
    return table, view.rest.to(torch.float64)


def _dft_rows(w: torch.Tensor, B: torch.Tensor) -> np.ndarray:
    coef = (w @ B.T).abs()
    return (coef / coef.amax(dim=1, keepdim=True).clamp(min=1e-300)).numpy()


def _ablation(model, sp, fractions: np.ndarray, sets: np.ndarray, draws: int, seed: int,
              progress: bool = False) -> np.ndarray:
    """Accuracy [F, G] (see the module docstring), mean over ``draws`` seeded nested orders."""
    dev = compute_device()  # the products and scores run there; the draws stay on the CPU
    tab, rest = _table(model)
    tab = tab.on(dev)
    rest = None if rest is None else rest.to(dev)[None]  # [1, P, p]
    K, M = sp.K, sp.d_mlp
    freq = sp.frequency
    members = torch.from_numpy(((sets[:, None] >> np.arange(K)[None, :]) & 1).astype(np.float64)).to(dev)  # [G, K]
    g = torch.Generator().manual_seed(int(seed))
    acc = np.zeros((len(fractions), len(sets)))
    P = tab.pairs.shape[0]
    chunk = max(1, int(3_000_000 // max(1, P * tab.p)))
    for _ in tqdm(range(draws), desc="explorer: ablation draws", disable=not progress):
        rank = torch.empty(M, dtype=torch.long)  # position of each neuron inside its group's random order
        for k in range(1, K + 1):
            idx = torch.nonzero(freq == k).flatten()
            rank[idx] = torch.randperm(len(idx), generator=g).argsort()
        n_k = torch.bincount(freq - 1, minlength=K)
        for fi, f in enumerate(fractions):
            keep = rank < torch.round(f * n_k.double()).long()[freq - 1]  # [M]
            post = tab.post * keep.double().to(dev)
            contrib = torch.zeros(K, P * tab.p, dtype=torch.float64, device=dev)
            for k in range(1, K + 1):
                idx = torch.nonzero(freq == k).flatten().to(dev)
                if len(idx):
                    contrib[k - 1] = (post[:, idx] @ tab.W_out[:, idx].T).reshape(-1)
            for c in range(0, len(sets), chunk):
                logits = (members[c:c + chunk] @ contrib).reshape(-1, P, tab.p)
                if rest is not None:
                    logits = logits + rest
                acc[fi, c:c + chunk] += tab.score(logits, "accuracy").accuracy.cpu().numpy()
    return acc / draws


@takes_device
def explorer_data_from_models(models: list[tuple[int | None, Any]], *, source: str, name: str,
                              train_mask: torch.Tensor | None = None,
                              fractions: tuple[float, ...] = DEFAULT_EXPLORER_FRACTIONS,
                              ablation_draws: int = 3, max_subset_k: int = 12,
                              max_pair_floats: int = 2_000_000, max_heatmap_neurons: int = 512,
                              seed: int = 0, progress: bool = False) -> ExplorerData:
    """Build :class:`ExplorerData` from ``[(step, model), ...]`` in step order (the last one is
    the final checkpoint the neuron, pair and ablation panels read)."""
    if not models:
        raise InputError("the explorer needs at least one checkpoint")
    fr = np.asarray([float(f) for f in fractions], dtype=np.float64)
    if len(fr) == 0 or np.any(fr <= 0) or np.any(fr > 1):
        raise InputError(f"keep fractions must lie in (0, 1], got {list(fractions)}")
    if ablation_draws < 1:
        raise InputError(f"ablation_draws must be >= 1, got {ablation_draws}")
    final_step, final = models[-1]
    p, M = final.cfg.p, final.cfg.d_mlp
    K = (p - 1) // 2
    notes: list[str] = []
    sp = family_spectrum(final)
    theta, xi = input_output_weights(final)  # [M, p] each (theta: u, the x weights, for concat_mlp)
    logits, post = _logits64(final)
    labels = (all_pairs(p).sum(1)) % p

    # pairs
    rng = np.random.default_rng(seed)
    n_pairs = p * p
    if n_pairs * M > max_pair_floats:
        n_keep = max(1, max_pair_floats // M)
        pair_index = np.sort(rng.choice(n_pairs, size=n_keep, replace=False))
        notes.append(f"pairs: {n_keep} of the {n_pairs} pairs are stored (seeded sample; p^2 d_mlp is above "
                     f"{max_pair_floats})")
    else:
        pair_index = np.arange(n_pairs)
    pi = torch.from_numpy(pair_index)
    contributions = (post[pi] * xi.T[labels[pi]]).numpy()  # W_out[z, m] * post[m]

    # heat-map rows: fixed across steps, ordered by final k* then phase
    if M > max_heatmap_neurons:
        rows = rng.choice(M, size=max_heatmap_neurons, replace=False)
        notes.append(f"heat-maps: {max_heatmap_neurons} of the {M} neurons (seeded sample)")
    else:
        rows = np.arange(M)
    rows = rows[np.lexsort((sp.phi_star.numpy()[rows], sp.frequency.numpy()[rows]))]
    rows_t = torch.from_numpy(rows)
    B = fourier_basis(p)

    # steps
    S = len(models)
    correct = np.zeros((S, n_pairs), dtype=bool)
    dft_in = np.zeros((S, len(rows), p))
    dft_out = np.zeros((S, len(rows), p))
    counts = np.zeros((S, K), dtype=np.int64)
    mask = None if train_mask is None else torch.as_tensor(train_mask, dtype=torch.bool)
    if mask is not None and mask.shape != (n_pairs,):
        raise InputError(f"train_mask must have {n_pairs} entries, got {tuple(mask.shape)}")
    train_acc = np.full(S, np.nan)
    test_acc = np.full(S, np.nan)
    steps: list[int] = []
    for i, (step, model) in enumerate(tqdm(models, desc="explorer: checkpoints", disable=not progress)):
        if model.cfg.p != p or model.cfg.d_mlp != M:
            raise CheckpointError(f"step {step}: p = {model.cfg.p}, d_mlp = {model.cfg.d_mlp}, but the final "
                                  f"checkpoint has p = {p}, d_mlp = {M}")
        lg = logits if i == S - 1 else _logits64(model)[0]
        ok = lg.argmax(1) == labels
        correct[i] = ok.numpy()
        if mask is None:
            train_acc[i] = float(ok.double().mean())
        else:
            if mask.any():
                train_acc[i] = float(ok[mask].double().mean())
            if (~mask).any():
                test_acc[i] = float(ok[~mask].double().mean())
        s_i = sp if i == S - 1 else family_spectrum(model)
        th, x_ = (w[rows_t] for w in input_output_weights(model))
        dft_in[i], dft_out[i] = _dft_rows(th, B), _dft_rows(x_, B)
        counts[i] = s_i.counts().numpy()
        steps.append(-1 if step is None else int(step))

    sets = group_sets(K, max_subset_k)
    if K > max_subset_k:
        notes.append(f"ablation: K = {K} > {max_subset_k}, so the group sets are all groups, each group alone "
                     "and all groups but one")
    abl = _ablation(final, sp, fr, sets, ablation_draws, seed, progress)
    spectra = attention = None
    if family_of(final).name == "transformer":
        from .transformer_views import transformer_run_views

        spectra, attention = transformer_run_views([(models[0][0], models[0][1]), (final_step, final)])

    return ExplorerData(
        source=source, name=name, p=p, d_mlp=M, activation=str(final.cfg.activation), family=family_of(final).name,
        final_step=None if final_step is None else int(final_step), basis_labels=basis_labels(p),
        theta=theta.numpy(), xi=xi.numpy(), alpha=sp.alpha.numpy(), beta=sp.beta.numpy(),
        frequency=sp.frequency.numpy(), alpha_star=sp.alpha_star.numpy(), beta_star=sp.beta_star.numpy(),
        phi=sp.phi_star.numpy(), psi=sp.psi_star.numpy(), D=sp.d.numpy(), in_dc=sp.in_dc.numpy(),
        out_dc=sp.out_dc.numpy(), share=sp.share.numpy(), vote=sp.vote_weight.numpy(),
        pair_index=pair_index, logits=logits[pi].numpy(), contributions=contributions,
        steps=steps, correct=correct, train_mask=None if mask is None else mask.numpy(),
        train_accuracy=train_acc, test_accuracy=test_acc, heatmap_neurons=rows, dft_in=dft_in,
        dft_out=dft_out, counts=counts, keep_fractions=fr, group_sets=sets, ablation_accuracy=abl,
        ablation_draws=ablation_draws, seed=seed, notes=notes, embedding_spectra=spectra, attention=attention,
    )


@takes_device
def explorer_data(path: str | os.PathLike, activation: str | None = None, *, progress: bool = False,
                  force: bool = False, max_steps: int = 120, **options: Any) -> ExplorerData:
    """:class:`ExplorerData` of a checkpoint file (one step) or a run folder (its checkpoints).

    ``activation`` is required for the paper authors' files (``force``: accept one that contradicts
    the recorded activation, see ``load_run``). A run with more than ``max_steps`` checkpoints keeps
    ``max_steps`` of them evenly spread over its list (first and last always kept; said in
    ``notes``), which bounds the page size. ``options`` go to
    :func:`explorer_data_from_models` (fractions, ablation_draws, max_subset_k, max_pair_floats,
    max_heatmap_neurons, seed).
    """
    from ..checkpoint import load_checkpoint
    from ..series import load_run

    if max_steps < 2:
        raise InputError(f"max_steps must be >= 2, got {max_steps}")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run folder")
    if path.is_file():
        ck = load_checkpoint(path, activation=activation, force=force)
        return explorer_data_from_models([(ck.step, ck.model)], source=str(path), name=path.name,
                                         progress=progress, **options)
    series = load_run(path, activation=activation, cache_size=2, force=force)
    mask = series.split.train_mask if series.has_test else None
    steps = list(series.steps)
    note = None
    if len(steps) > max_steps:
        keep = np.unique(np.rint(np.linspace(0, len(steps) - 1, max_steps)).astype(int))
        note = f"steps: {len(keep)} of the run's {len(steps)} checkpoints, evenly spread (max_steps = {max_steps})"
        steps = [steps[i] for i in keep]
    data = explorer_data_from_models(_LazyModels(series, steps), source=str(path), name=path.resolve().name,
                                     train_mask=mask, progress=progress, **options)
    if note is not None:
        data.notes.insert(0, note)
    return data


class _LazyModels(list):
    """``[(step, model)]`` of a run that loads each model when it is indexed or iterated."""

    def __init__(self, series, steps: list[int]) -> None:
        super().__init__(steps)
        self._series = series

    def __getitem__(self, i):
        step = list.__getitem__(self, i)
        return step, self._series.model(step)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
