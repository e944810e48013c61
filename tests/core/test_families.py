"""The family registry, the neuron view of each family, and plain state dicts of concat MLPs."""

import pytest
import torch
from torch import nn

from mechinterp_modadd import ModAddMLP, ModelConfig
from mechinterp_modadd.data import all_pairs
from mechinterp_modadd.errors import CheckpointError, ConfigError, InputError
from mechinterp_modadd.families import (
    FAMILIES,
    Family,
    detect_family,
    family_name,
    family_of,
    get_family,
    neuron_view,
    register_family,
)
from mechinterp_modadd.families.concat_mlp import ConcatMLP, ConcatMLPConfig, parse_concat_state_dict
from mechinterp_modadd.forward import all_pair_logits, hidden
from mechinterp_modadd.fourier import neuron_spectrum

P = 11


@pytest.fixture(scope="module")
def mlp():
    return ModAddMLP(ModelConfig(p=P, d_mlp=24, activation="relu"), seed=3)


@pytest.fixture(scope="module")
def concat():
    return ConcatMLP(ConcatMLPConfig(p=P, d_mlp=20, activation="quad", bias=True), seed=4)


def _randomise_biases(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.mlp.b_in.copy_(torch.randn(model.cfg.d_mlp, generator=g))
        model.mlp.b_out.copy_(torch.randn(model.cfg.p, generator=g))


# ------------------------------------------------------------------------------------ registry
def test_registry(mlp, concat):
    assert list(FAMILIES)[:2] == ["mlp", "concat_mlp"]
    assert family_of(mlp) is get_family("mlp") and family_name(concat) == "concat_mlp"
    assert get_family(get_family("mlp")) is get_family("mlp")
    with pytest.raises(ConfigError, match="unknown family 'nope'; known: mlp, concat_mlp"):
        get_family("nope")
    with pytest.raises(ConfigError, match="no registered family owns a Linear"):
        family_of(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="already registered"):
        register_family(get_family("mlp"))
    with pytest.raises(ConfigError, match="Family instance"):
        register_family("mlp")


def test_register_a_new_family(mlp):
    class Renamed(type(get_family("mlp"))):
        name = "renamed_mlp"
        model_types = ()

    try:
        fam = register_family(Renamed())
        assert isinstance(fam, Family) and get_family("renamed_mlp") is fam
        # a second family accepting the same keys makes detection ambiguous
        with pytest.raises(CheckpointError, match="several families"):
            detect_family(mlp.state_dict())
    finally:
        FAMILIES.pop("renamed_mlp", None)


# --------------------------------------------------------------------------------- mlp view
def test_mlp_view_matches_closed_form(mlp):
    view = neuron_view(mlp)
    pre, post = hidden(mlp)
    assert view.family == "mlp" and view.n == 24 and view.p == P
    assert torch.equal(view.pre, pre) and torch.equal(view.post, post)
    assert torch.equal(view.rest, torch.zeros(P * P, P, dtype=torch.float64))
    assert torch.equal(view.W, mlp.W_out.detach().double().T)
    assert torch.allclose(view.logits(), all_pair_logits(mlp), rtol=0, atol=1e-12)
    # the view's input weights are the closed form's theta: pre = theta[x] + theta[y]
    s = neuron_spectrum(mlp)
    f = view.fourier2d("pre")
    # pre is linear in x and y: all its variance is in the linear terms, at theta's frequencies
    assert torch.allclose(f.product_fraction.sum(1), torch.zeros(24, dtype=torch.float64), atol=1e-12)
    e = s.in_energy / s.in_energy.sum(1, keepdim=True)
    assert torch.allclose(f.fraction, e, atol=1e-10)


def test_view_ablation_and_subset(mlp):
    view = neuron_view(mlp)
    drop = [0, 5, 7]
    scale = torch.ones(24)
    scale[drop] = 0
    from mechinterp_modadd.forward import logits

    assert torch.allclose(view.ablate(drop), logits(mlp, scale=scale), atol=1e-12)
    mean = view.post.mean(0)
    assert torch.allclose(view.ablate(drop, mode="mean"), logits(mlp, scale=scale, fill=mean), atol=1e-12)
    batch = torch.stack([scale, torch.ones(24)])
    assert view.logits(batch).shape == (2, P * P, P)
    sub = view.subset([1, 2, 3])
    assert sub.n == 3 and sub.neurons.tolist() == [1, 2, 3]
    assert torch.allclose(sub.logits(), view.logits(), atol=1e-12)
    part = neuron_view(mlp, neurons=[1, 2, 3])
    assert torch.allclose(part.rest, sub.rest, atol=1e-12) and torch.equal(part.pre, sub.pre)
    assert torch.allclose(view.contribution(4), view.post[:, 4:5] * view.W[4], atol=0)
    assert view.accuracy() == pytest.approx(float((view.logits().argmax(-1) == view.labels).double().mean()))
    with pytest.raises(InputError, match="neuron indices"):
        view.ablate([24])
    with pytest.raises(InputError, match="ablation mode"):
        view.ablate([1], mode="resample")
    with pytest.raises(InputError, match="scale must have shape"):
        view.logits(torch.ones(3))


def test_mlp_view_through_hooks(mlp):
    # a hook on mlp.hook_post (zeroing neuron 2) shows in the view, as in the model's forward
    def kill(t, hook):
        t = t.clone()
        t[:, 2] = 0
        return t

    with mlp.hooks(fwd_hooks=[("mlp.hook_post", kill)]):
        view = neuron_view(mlp)
        want = mlp(all_pairs(P)).double()
    assert view.post[:, 2].abs().max() == 0
    assert torch.allclose(view.logits(), want, atol=1e-5)


# ------------------------------------------------------------------------------ concat view
def test_concat_view(concat):
    _randomise_biases(concat)
    view = neuron_view(concat)
    pairs = all_pairs(P)
    want = concat(pairs).double()
    assert view.family == "concat_mlp"
    assert torch.allclose(view.logits(), want, atol=1e-5)
    assert torch.allclose(view.rest, concat.mlp.b_out.double().expand(P * P, P), atol=0)
    u, v = concat.W_x.double(), concat.W_y.double()
    pre = u.T[pairs[:, 0]] + v.T[pairs[:, 1]] + concat.mlp.b_in.double()
    assert torch.allclose(view.pre, pre, atol=1e-12)
    assert torch.allclose(view.post, pre**2, atol=1e-12)
    _, cache = concat.run_with_cache(pairs)
    assert torch.allclose(cache["blocks.0.mlp.hook_post"].double(), view.post, atol=1e-4)


def test_concat_config_and_model():
    with pytest.raises(ConfigError, match="even"):
        ConcatMLPConfig(p=10)
    with pytest.raises(ConfigError, match="unknown ConcatMLPConfig keys"):
        ConcatMLPConfig.from_dict({"p": 5, "width": 3})
    a = ConcatMLP(ConcatMLPConfig(p=7, d_mlp=5), seed=1)
    b = ConcatMLP(ConcatMLPConfig(p=7, d_mlp=5), seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert sorted(a.state_dict()) == ["mlp.W_out", "mlp.W_x", "mlp.W_y"]
    assert a.W_in.shape == (5, 14)
    assert a.cfg.n_params == sum(t.numel() for t in a.parameters()) == 3 * 7 * 5
    assert ConcatMLPConfig(p=7, d_mlp=5, bias=True).n_params == sum(
        t.numel() for t in ConcatMLP(ConcatMLPConfig(p=7, d_mlp=5, bias=True), seed=0).parameters())
    a.set_activation("relu")
    assert a.cfg.activation == "relu" and a.activation == "relu"


# ------------------------------------------------------------------------- foreign state dicts
class TorchConcat(nn.Module):
    """A concatenated-input MLP as someone would write it in plain torch."""

    def __init__(self, p, width, bias):
        super().__init__()
        self.fc1 = nn.Linear(2 * p, width, bias=bias)
        self.fc2 = nn.Linear(width, p, bias=bias)

    def forward(self, pairs):
        p = self.fc2.out_features
        x = torch.cat([nn.functional.one_hot(pairs[:, 0], p), nn.functional.one_hot(pairs[:, 1], p)], 1).float()
        return self.fc2(self.fc1(x) ** 2)


@pytest.mark.parametrize("bias", [False, True])
def test_plain_concat_state_dict_loads(bias):
    torch.manual_seed(0)
    net = TorchConcat(P, 16, bias)
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    fam = detect_family(sd)
    assert fam.name == "concat_mlp"
    model = fam.from_state_dict(sd, activation="quad")
    assert model.cfg.bias is bias and model.cfg.d_mlp == 16 and model.cfg.p == P
    pairs = all_pairs(P)
    assert torch.allclose(model(pairs), net(pairs), atol=1e-5)


def test_plain_concat_two_matrices_and_transposed():
    g = torch.Generator().manual_seed(1)
    u, v, o = (torch.randn(12, P, generator=g), torch.randn(12, P, generator=g), torch.randn(P, 12, generator=g))
    ref = get_family("concat_mlp").from_state_dict({"W_x": u, "W_y": v, "W_out": o}, activation="relu")
    for sd in ({"U": u.T, "V": v.T, "out": o.T},
               {"W_in": torch.cat([u, v], 1).T, "W_out": o.T},
               {"emb_x": u, "emb_y": v, "unembed": o, "b1": torch.zeros(12), "b2": torch.zeros(P)}):
        m = get_family("concat_mlp").from_state_dict(sd, activation="relu")
        assert torch.equal(m.W_x, ref.W_x) and torch.equal(m.W_y, ref.W_y) and torch.equal(m.W_out, ref.W_out)


def test_mlp_state_dict_detected(mlp):
    sd = {f"model.{k}": v for k, v in mlp.state_dict().items()}
    assert detect_family(sd).name == "mlp"
    m = get_family("mlp").from_state_dict(sd, activation="relu")
    assert torch.equal(m.W_in, mlp.W_in)
    with pytest.raises(CheckpointError, match="does not record the activation"):
        get_family("mlp").from_state_dict(sd)


@pytest.mark.parametrize("sd, match", [
    ({"fc1.weight": torch.zeros(16, 2 * P), "fc2.weight": torch.zeros(P + 1, 16)},
     r"f.pt: key 'fc1.weight' has shape \(16, 22\) and key 'fc2.weight' shape \(12, 16\)"),
    ({"a": torch.zeros(16, P), "b": torch.zeros(16, P - 2), "c": torch.zeros(P, 16)},
     r"f.pt: key 'a' has shape \(16, 11\) but key 'b' has \(16, 9\)"),
    ({"fc1.weight": torch.zeros(16, 2 * P), "fc1.bias": torch.zeros(7), "fc2.weight": torch.zeros(P, 16)},
     r"f.pt: key 'fc1.bias' has shape \(7,\); a bias must be \[16\] \(hidden\) or \[11\] \(output\)"),
    ({"w": torch.zeros(16, 2 * P)}, r"f.pt: 1 matrices \(w \[16, 22\]\)"),
    ({"fc1.weight": torch.zeros(16, 2 * P), "fc2.weight": torch.zeros(P, 16, dtype=torch.long)},
     r"f.pt: key 'fc1.weight' has dtype|f.pt: key 'fc2.weight' has dtype torch.int64"),
    ({"mlp.W_x": torch.zeros(16, P), "mlp.W_out": torch.zeros(P, 16)}, r"f.pt: missing key 'mlp.W_y'"),
    ({"fc1.weight": torch.full((16, 2 * P), float("nan")), "fc2.weight": torch.zeros(P, 16)},
     r"f.pt: key 'fc1.weight' has 352 NaN/inf values"),
    ({"x": torch.zeros(2, 2, 2)}, r"f.pt: key 'x' has shape \(2, 2, 2\)"),
])
def test_concat_loader_errors(sd, match):
    with pytest.raises(CheckpointError, match=match) as e:
        get_family("concat_mlp").from_state_dict(sd, activation="quad", where="f.pt")
    assert "\n" not in str(e.value)


def test_detect_nothing():
    with pytest.raises(CheckpointError, match="no known network family"):
        detect_family({"a": torch.zeros(3, 3, 3)}, where="f.pt")
    with pytest.raises(CheckpointError, match="p mismatch"):
        get_family("concat_mlp").from_state_dict({"W_in": torch.zeros(4, 2 * P), "W_out": torch.zeros(P, 4)},
                                                 activation="quad", p=13)


def test_parse_prefers_linear_layout():
    # a square-ish case: width 2p; the nn.Linear layout [out, in] is read first
    lay = parse_concat_state_dict({"i": torch.zeros(2 * P, 2 * P), "o": torch.zeros(P, 2 * P)})
    assert (lay.p, lay.width) == (P, 2 * P)


def test_activations_without_the_rest(mlp, concat):
    for model in (mlp, concat):
        fam = family_of(model)
        pre, post = fam.activations(model, neurons=[3, 1])
        view = neuron_view(model, neurons=[3, 1])
        assert torch.equal(pre, view.pre) and torch.equal(post, view.post)


def test_sampled_fourier2d_summary(monkeypatch, mlp):
    import mechinterp_modadd.diagnose as dg

    full = dg.fourier2d_summary(mlp)
    monkeypatch.setattr(dg, "FOURIER2D_MAX_NUMBERS", 10)
    monkeypatch.setattr(dg, "FOURIER2D_SAMPLE", 24)  # every neuron, through the sampled path
    s = dg.fourier2d_summary(mlp)
    assert s.sampled and s.n_neurons == 24 and "a seeded sample of 24 neurons" in s.text()
    assert s.pre == full.pre and s.post == full.post and not full.sampled


def test_plain_safetensors_and_torch_files_load(tmp_path):
    from safetensors.torch import save_file

    from mechinterp_modadd.checkpoint import load_checkpoint

    torch.manual_seed(1)
    net = TorchConcat(P, 12, bias=False)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "net.safetensors")
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, tmp_path / "net.pt")
    pairs = all_pairs(P)
    for f in ("net.safetensors", "net.pt"):
        ck = load_checkpoint(tmp_path / f, activation="quad")
        assert ck.family == "concat_mlp" and ck.source_format == "state_dict"
        assert torch.allclose(ck.model(pairs), net(pairs), atol=1e-5)
    with pytest.raises(CheckpointError, match="p mismatch"):
        load_checkpoint(tmp_path / "net.pt", activation="quad", p=13)
