"""Restricted and excluded loss: Nanda et al.'s progress measures (2023, "Progress measures for grokking").

Model-agnostic: everything here reads the float64 logits of all p^2 pairs (or a function that
produces them) and a choice of key frequencies, so the one-hot MLP, a concatenated-input MLP and a
transformer share it. Definitions (ours made precise; the paper describes them in words):

Write the logits of all p^2 pairs as L(x, y, z) (z = the output class). For each output z, view
L(., ., z) as a function on Z_p x Z_p with the uniform inner product and split off its projection
onto the *key directions*

    P_z(x, y) = sum_{k in keys} [ C_k(z) cos(w_k (x + y)) + S_k(z) sin(w_k (x + y)) ],
    C_k(z) = (2 / p^2) sum_{x, y} L(x, y, z) cos(w_k (x + y)),   S_k(z) likewise with sin,

with w_k = 2 pi k / p. Since cos(w_k (x + y - z)) = cos(w_k (x + y)) cos(w_k z) + sin(w_k (x + y))
sin(w_k z), every term cos / sin (w_k (x + y - z)) of key k lies in these directions (they allow any
dependence on z, as in Nanda et al., who project each output's logits separately).

- **restricted logits** R(x, y, z) = c(z) + P_z(x, y), with c(z) the mean of L(., ., z) over all
  pairs (each output's constant). **Restricted loss** = mean cross-entropy of R over the *test*
  pairs (``restricted_loss``; Nanda et al. evaluate it there, where it falls before the test loss)
  and, as a second number, over *all* pairs (``restricted_loss_all``). A full-data run has no test
  pairs: its ``restricted_loss`` is the all-pairs one.
- **excluded logits** E = L - P (the key directions removed, everything else kept, constants
  included). **Excluded loss** = mean cross-entropy of E over the *training* pairs (all pairs for a
  full-data run). It rises as the algorithm forms, even while the training loss stays low.

**Key frequencies** (:func:`key_frequencies`, :func:`top_keys`). Nanda et al. pick a few key
frequencies by the norm of the Fourier components of the embedding (5 of 56 at p = 113): the
spikes of that spectrum. Ours, made precise (rule ``"norm"``, the default): sort the frequencies
by their energy E_k (the squared norm of the embedding's, or any per-frequency source's, cos / sin
components) and keep the top k, with k the smallest number whose energies hold at least
:data:`KEY_ENERGY_SHARE` = 0.8 of the total non-constant energy; ``k=`` fixes k instead. For the
one-hot MLP the embedding is theta (E_k = sum_m alpha_m(k)^2); a transformer passes the energy of
W_E, a concatenated MLP that of [u; v] (:func:`frequency_energy` of any [rows, p] matrix); with no
weights at hand, :func:`logit_frequency_energy` measures the energy of each key direction in the
logits themselves. The older rule ``"vote"`` (k whose neurons hold >= 1 / (2K) of the vote weight
alpha^2 beta) is kept as an option. Over a run,
:func:`~mechinterp_modadd.analysis.grokking.progress_measures` takes the keys of the *last*
checkpoint and uses them at every step, as Nanda et al. do.

**When the measure cannot discriminate.** Keep every k and R is the mean of L over each
anti-diagonal x + y = s: *any* function of x + y, a lookup table of the training labels
included, passes (logits 10 at the training labels and 0 elsewhere give a restricted all-pairs
loss near 0.02 at p = 23 with all 11 keys). So when the keys cover more than
``max_key_fraction`` = half of the K frequencies, the verdict is ``"undetermined"`` (``holds`` is
False) and ``reason`` says so. The paper's p = 23 networks use all 11 frequencies about equally
(measured on the authors' grokking run: every frequency holds 0.078-0.101 of the input energy at
every checkpoint), so there the measure is uninformative, which is a finding, not a failure.

Checks (tests): if L is exactly a sum of a_k cos(w_k (x + y - z)) over key k, then R = L (restricted
loss = full loss) and E = 0 (excluded loss = log p). For the idealised network (Quad, all K
frequencies, symmetric phases) the closed form is (a N / 2)[-1 + (p/2) 1(x + y = z) + (p/4)(1(2x = z)
+ 1(2y = z))]; its ghost terms are functions of (x, z) or (y, z) alone, which have no x + y
component, so R = (a N / 2)[(p/2) 1(x + y = z) - 1/2], restricted loss = log(1 + (p - 1)
exp(-a N p / 4)), and E keeps the ghosts: excluded loss on a pair with x != y is
log(p - 2 + 2 exp(a N p / 8)) (the two ghosts beat the correct class by a N p / 8).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from ..data import all_pairs
from ..errors import InputError
from ..fourier import NeuronSpectrum
from .base import ClaimResult, Thresholds

__all__ = ["KeyChoice", "KEY_RULES", "KEY_ENERGY_SHARE", "key_frequencies", "top_keys", "frequency_energy",
           "logit_frequency_energy", "resolve_keys", "key_direction_part", "restricted_excluded_logits",
           "RestrictedLoss", "RestrictedLossThresholds", "restricted_loss", "restricted_loss_of", "parse_keys"]

#: rules that pick the key frequencies: "norm" (Nanda et al.'s, the default) and "vote" (ours, older)
KEY_RULES = ("norm", "vote")
#: the "norm" rule keeps the fewest top frequencies holding at least this share of the energy
KEY_ENERGY_SHARE = 0.8

KeyChoice = str | Sequence[int] | None


# ----------------------------------------------------------------------------- key frequencies
def frequency_energy(weights: Float[Tensor, "rows p"]) -> Float[Tensor, "K"]:
    """E_k = sum over rows of c_k^2 + s_k^2 (unit-norm cos / sin rows of Z_p), k = 1..K, float64.

    ``weights`` is any matrix whose last axis runs over Z_p (theta [d_mlp, p] of the one-hot MLP,
    W_E [d_model, p] of a transformer, u or v of a concatenated MLP; a 1-D vector is one row).
    """
    w = torch.as_tensor(weights).detach().to("cpu", torch.float64)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.shape[-1] < 3:
        raise InputError(f"weights must be [rows, p] with p >= 3, got shape {tuple(w.shape)}")
    p = w.shape[-1]
    K = (p - 1) // 2
    j = torch.arange(p, dtype=torch.float64)
    ang = 2 * math.pi * torch.arange(1, K + 1, dtype=torch.float64)[:, None] * j[None, :] / p  # [K, p]
    cos, sin = torch.cos(ang), torch.sin(ang)
    cos, sin = cos / cos.norm(dim=1, keepdim=True), sin / sin.norm(dim=1, keepdim=True)
    return ((w @ cos.T) ** 2 + (w @ sin.T) ** 2).sum(dim=0)


def logit_frequency_energy(logits: Float[Tensor, "pairs p"], p: int) -> Float[Tensor, "K"]:
    """E_k = sum over outputs z and pairs of P_z^(k)(x, y)^2: the energy of key direction k in the logits.

    For when no weights are at hand (a lookup table, an opaque model); float64.
    """
    B = _antidiagonal_means(logits, p)  # [s, z]
    K = (p - 1) // 2
    k = torch.arange(1, K + 1, dtype=torch.float64)[:, None]
    w = 2 * math.pi * k * torch.arange(p, dtype=torch.float64)[None, :] / p
    C, S = (2.0 / p) * torch.cos(w) @ B, (2.0 / p) * torch.sin(w) @ B  # [K, z]
    return (p * p / 2.0) * (C ** 2 + S ** 2).sum(dim=1)


def top_keys(energy: Float[Tensor, "K"], k: int | None = None, *, share: float = KEY_ENERGY_SHARE) -> list[int]:
    """The top-k frequencies (1-based, sorted) by ``energy``; ``k=None``: the fewest holding >= ``share``
    (frequencies tied with the last one kept are kept too: equal spikes are all keys).

    An all-zero energy (no signal at all) returns every frequency: nothing singles any k out.
    """
    e = torch.as_tensor(energy, dtype=torch.float64).reshape(-1)
    K = len(e)
    if K == 0:
        raise InputError("energy has no frequencies")
    if not 0.0 < share <= 1.0:
        raise InputError(f"share must be in (0, 1], got {share!r}")
    order = torch.argsort(-e, stable=True)  # ties: the lower frequency first
    total = float(e.sum())
    if k is None:
        if not total > 0:
            return list(range(1, K + 1))
        es = e[order]
        cum = torch.cumsum(es, 0) / total
        k = int((cum < share - 1e-12).sum()) + 1
        while k < K and float(es[k]) >= float(es[k - 1]) * (1 - 1e-9):  # a tie at the cut: keep them all
            k += 1
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= K:
        raise InputError(f"k (the number of key frequencies) must be an integer in 1..{K}, got {k!r}")
    return sorted(int(i) + 1 for i in order[:k])


def key_frequencies(spectrum: NeuronSpectrum | Tensor, min_share: float | None = None, *, rule: str = "norm",
                    k: int | None = None) -> list[int]:
    """Key frequencies (1-based, sorted) of a network.

    ``spectrum`` is the one-hot MLP's :class:`~mechinterp_modadd.fourier.NeuronSpectrum` or, for any
    other model, a per-frequency energy vector [K] (e.g. :func:`frequency_energy` of its
    embedding). Rules (module docstring): ``"norm"`` (default): :func:`top_keys` of the embedding
    energy sum_m alpha_m(k)^2, the top ``k`` or the fewest holding :data:`KEY_ENERGY_SHARE`;
    ``"vote"``: the k whose neurons (k* = k) hold >= ``min_share`` (default 1 / (2K)) of the total
    vote weight alpha^2 beta (needs a spectrum). ``min_share`` applies to ``"vote"`` only.
    """
    if rule not in KEY_RULES:
        raise InputError(f"key rule must be one of {KEY_RULES}, got {rule!r}")
    if not isinstance(spectrum, NeuronSpectrum):
        if rule != "norm":
            raise InputError("the 'vote' key rule needs a NeuronSpectrum (vote weights); got an energy vector")
        return top_keys(spectrum, k)
    if rule == "norm":
        return top_keys((spectrum.alpha.double() ** 2).sum(dim=0), k)
    K = spectrum.K
    share_min = 1.0 / (2 * K) if min_share is None else float(min_share)
    if not 0.0 <= share_min <= 1.0:
        raise InputError(f"min_share must be in [0, 1], got {min_share!r}")
    w = spectrum.vote_weight.double()
    per_k = torch.zeros(K, dtype=torch.float64).index_add_(0, spectrum.frequency.long() - 1, w)
    total = float(per_k.sum())
    if not total > 0:
        return list(range(1, K + 1))
    return [kk + 1 for kk in range(K) if float(per_k[kk]) / total >= share_min]


def parse_keys(text: str | None) -> KeyChoice:
    """The ``--keys`` option: ``norm`` / ``vote`` (a rule), ``norm:3`` (top 3 by norm) or ``3,9,10``."""
    if text is None:
        return None
    t = text.strip().lower()
    if t in KEY_RULES:
        return t
    if t.startswith("norm:"):
        n = t.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise InputError(f"--keys: expected norm:N with N a positive integer, got {text!r}")
        return t
    parts = [s.strip() for s in t.split(",") if s.strip()]
    if not parts or not all(s.isdigit() for s in parts):
        raise InputError(f"--keys: expected 'norm', 'vote', 'norm:N' or a comma list of frequencies, got {text!r}")
    return [int(s) for s in parts]


def resolve_keys(keys: KeyChoice, p: int, *, spectrum: NeuronSpectrum | None = None,
                 energy: Tensor | None = None, logits: Tensor | None = None, k: int | None = None
                 ) -> tuple[list[int], str]:
    """(keys, how they were chosen) from a key choice: an explicit list, ``"norm"`` / ``"norm:N"``
    / ``None`` (top-k by norm: of ``energy`` if given, else of the spectrum's embedding, else of
    the logits' key directions), or ``"vote"`` (needs ``spectrum``)."""
    if keys is None:
        keys = "norm"
    if isinstance(keys, str):
        rule = keys.lower()
        if rule.startswith("norm:"):
            rule, k = "norm", int(rule.split(":", 1)[1])
        if rule not in KEY_RULES:
            raise InputError(f"keys must be a list of frequencies or one of {KEY_RULES} (or norm:N), got {keys!r}")
        if rule == "vote":
            if spectrum is None:
                raise InputError("keys='vote' needs the model's neuron spectrum")
            return key_frequencies(spectrum, rule="vote"), "vote share >= 1/(2K)"
        if energy is not None:
            src, e = "embedding", torch.as_tensor(energy, dtype=torch.float64)
        elif spectrum is not None:
            src, e = "embedding", (spectrum.alpha.double() ** 2).sum(dim=0)
        elif logits is not None:
            src, e = "logits", logit_frequency_energy(logits, p)
        else:
            raise InputError("keys='norm' needs an energy vector, a spectrum or the logits")
        if len(e) != (p - 1) // 2:
            raise InputError(f"energy has {len(e)} frequencies, expected K = {(p - 1) // 2} for p = {p}")
        how = f"top {k} by {src} norm" if k is not None else f"top-k by {src} norm (>= {KEY_ENERGY_SHARE:g} of energy)"
        return top_keys(e, k), how
    return _check_keys(p, keys), "given"


def _check_keys(p: int, keys: Sequence[int]) -> list[int]:
    K = (p - 1) // 2
    out = sorted({int(k) for k in keys})
    if any(not 1 <= k <= K for k in out):
        raise InputError(f"key frequencies must lie in 1..{K} for p = {p}, got {list(keys)}")
    return out


# ----------------------------------------------------------------------------- projections
def _antidiagonal_means(logits: Tensor, p: int) -> Tensor:
    if logits.shape != (p * p, p):
        raise InputError(f"logits must have shape [{p * p}, {p}] (all pairs x classes), got {tuple(logits.shape)}")
    L = logits.detach().to("cpu", torch.float64)
    pairs = all_pairs(p)
    s = (pairs[:, 0] + pairs[:, 1]) % p
    return torch.zeros(p, p, dtype=torch.float64).index_add_(0, s, L) / p  # [s, z]


def key_direction_part(logits: Float[Tensor, "pairs p"], p: int, keys: Sequence[int]) -> Float[Tensor, "pairs p"]:
    """P: the projection of each output's logits onto cos / sin (w_k (x + y)) for k in ``keys``.

    ``logits`` are [p*p, p] in ``all_pairs`` order (x major). Computed through the mean of L over
    each anti-diagonal x + y = s (the projection onto functions of x + y), then a real DFT in s.
    """
    B = _antidiagonal_means(logits, p)
    keys = _check_keys(p, keys)
    pairs = all_pairs(p)
    s = (pairs[:, 0] + pairs[:, 1]) % p
    if not keys:
        return torch.zeros(p * p, p, dtype=torch.float64)
    k = torch.tensor(keys, dtype=torch.float64)[:, None]
    w = 2 * math.pi * k * torch.arange(p, dtype=torch.float64)[None, :] / p  # [n_keys, s]
    cos, sin = torch.cos(w), torch.sin(w)
    C, S = (2.0 / p) * cos @ B, (2.0 / p) * sin @ B  # [n_keys, z]
    part = cos.T @ C + sin.T @ S  # [s, z]
    return part[s]


def restricted_excluded_logits(logits: Float[Tensor, "pairs p"], p: int, keys: Sequence[int]
                               ) -> tuple[Float[Tensor, "pairs p"], Float[Tensor, "pairs p"]]:
    """(R, E) of the module docstring: R = c(z) + P, E = L - P."""
    L = logits.detach().to("cpu", torch.float64)
    P = key_direction_part(L, p, keys)
    const = L.mean(dim=0, keepdim=True)  # c(z): each output's mean over all pairs
    return const + P, L - P


def _ce(logits: Tensor, y: Tensor, mask: Tensor | None) -> float:
    if mask is not None:
        logits, y = logits[mask], y[mask]
    if len(y) == 0:
        return math.nan
    return float(torch.nn.functional.cross_entropy(logits, y))


# ----------------------------------------------------------------------------- the measure
@dataclass(frozen=True)
class RestrictedLossThresholds(Thresholds):
    """Thresholds of ``restricted_loss`` (ours; Nanda et al. read the curves by eye):

    - undetermined when the keys number more than ``max_key_fraction`` * K;
    - otherwise holds when the restricted loss (test pairs; all pairs without a test set) is below
      ``max_fraction_of_log_p`` * log p (the key directions alone predict the held-out pairs) and
      the excluded loss on the training pairs exceeds the training loss by at least
      ``min_excluded_gap`` nats (removing the key directions hurts).
    """

    max_key_fraction: float = 0.5
    max_fraction_of_log_p: float = 0.5
    min_excluded_gap: float = math.log(2)


@dataclass
class RestrictedLoss(ClaimResult):
    """Full, restricted and excluded loss of one model (definitions in the module docstring).

    ``restricted_loss``: on the test pairs (all pairs when there are none, ``eval_pairs`` says
    which); ``restricted_loss_all``: on all pairs; ``excluded_loss``: on the training pairs.
    ``verdict`` is ``"holds"``, ``"fails"`` or ``"undetermined"`` (more than half of the
    frequencies are keys: the restriction keeps nearly every function of x + y, a lookup table
    passes; ``holds`` is then False and ``reason`` says so). Thresholds:
    :class:`RestrictedLossThresholds`.
    """

    verdict: str = "fails"
    reason: str = ""
    full_loss: float = math.nan
    train_loss: float = math.nan
    test_loss: float = math.nan
    restricted_loss: float = math.nan
    restricted_loss_all: float = math.nan
    excluded_loss: float = math.nan
    eval_pairs: str = "all"
    log_p: float = math.nan
    K: int = 0
    keys: list[int] = field(default_factory=list)
    key_rule: str = "given"
    claim: ClassVar[str] = "restricted_loss"
    key_metric: ClassVar[str] = "restricted_loss"

    def summary(self) -> str:
        return (f"{self.claim}: {self.key_metric} ({self.eval_pairs} pairs) = {self.restricted_loss:.4g}, "
                f"excluded = {self.excluded_loss:.4g}, keys {self.keys} ({self.key_rule}) -> {self.verdict}"
                + (f" ({self.reason})" if self.reason else ""))


def restricted_loss(logits: Float[Tensor, "pairs p"] | Callable[[], Tensor], p: int, keys: KeyChoice = "norm",
                    train_mask: Tensor | None = None, *, test_mask: Tensor | None = None,
                    spectrum: NeuronSpectrum | None = None, energy: Tensor | None = None, k: int | None = None,
                    thresholds: RestrictedLossThresholds | None = None) -> RestrictedLoss:
    """Restricted loss on the test pairs (and all pairs), excluded loss on the training pairs.

    Args:
        logits: [p*p, p] logits of all pairs in ``all_pairs`` order, or a function returning them.
        keys: explicit frequencies, or a rule: ``"norm"`` (default; top-k by the norm of
            ``energy``, else of ``spectrum``'s embedding, else of the logits), ``"norm:N"``,
            ``"vote"`` (needs ``spectrum``). See :func:`resolve_keys`.
        train_mask: bool [p*p] of the training pairs (None: a full-data run, no test set).
        test_mask: bool [p*p] of the test pairs (default: the complement of ``train_mask``).
        k: the number of keys for the ``"norm"`` rule (default: the fewest holding 0.8 of the energy).
    """
    L = logits() if callable(logits) else logits
    L = torch.as_tensor(L).detach().to("cpu", torch.float64)
    for name, m in (("train_mask", train_mask), ("test_mask", test_mask)):
        if m is not None and (m.shape != (p * p,) or m.dtype != torch.bool):
            raise InputError(f"{name} must be a bool tensor of shape [{p * p}], got {m.dtype} {tuple(m.shape)}")
    key_list, how = resolve_keys(keys, p, spectrum=spectrum, energy=energy, logits=L, k=k)
    th = thresholds or RestrictedLossThresholds()
    if test_mask is None and train_mask is not None:
        test_mask = ~train_mask
    has_test = test_mask is not None and bool(test_mask.any())
    R, E = restricted_excluded_logits(L, p, key_list)
    pairs = all_pairs(p)
    y = (pairs[:, 0] + pairs[:, 1]) % p
    full, train = _ce(L, y, None), _ce(L, y, train_mask)
    test = _ce(L, y, test_mask) if has_test else math.nan
    r_all = _ce(R, y, None)
    r_eval = _ce(R, y, test_mask) if has_test else r_all
    el = _ce(E, y, train_mask)
    K = (p - 1) // 2
    log_p = math.log(p)
    if len(key_list) > th.max_key_fraction * K:
        verdict = "undetermined"
        reason = (f"{len(key_list)} of {K} frequencies are keys (more than {th.max_key_fraction:g} of them): the "
                  f"restriction keeps nearly every function of x + y, so a lookup table would pass too")
    else:
        ok_r = r_eval < th.max_fraction_of_log_p * log_p
        ok_e = el >= train + th.min_excluded_gap
        verdict = "holds" if ok_r and ok_e else "fails"
        reason = "" if verdict == "holds" else "; ".join(
            ([f"restricted loss {r_eval:.3g} >= {th.max_fraction_of_log_p:g} log p"] if not ok_r else [])
            + ([f"excluded loss {el:.3g} < train loss + {th.min_excluded_gap:.3g}"] if not ok_e else []))
    return RestrictedLoss(holds=verdict == "holds", verdict=verdict, reason=reason, full_loss=full,
                          train_loss=train, test_loss=test, restricted_loss=r_eval, restricted_loss_all=r_all,
                          excluded_loss=el, eval_pairs="test" if has_test else "all", log_p=log_p, K=K,
                          keys=key_list, key_rule=how, thresholds=th)


def restricted_loss_of(model: Any, split: Any = None, keys: KeyChoice = "norm", **kw: Any) -> RestrictedLoss:
    """:func:`restricted_loss` of a model on a split (None: all pairs, no test): the paper's one-hot MLP
    (``ModAddMLP``), or another family through its logits and closed-form spectrum
    (:mod:`mechinterp_modadd.analysis.per_family`)."""
    from .per_family import family_logits, family_spectrum

    p = model.cfg.p
    train_mask = split.train_mask if split is not None else None
    test_mask = split.test_mask if split is not None else None
    return restricted_loss(lambda: family_logits(model), p, keys, train_mask, test_mask=test_mask,
                           spectrum=family_spectrum(model), **kw)
