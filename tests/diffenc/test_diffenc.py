"""DiffEnc's continuous-time loss against T·KL(q(z_s|z_t,x) ‖ p(z_s|z_t)), its initial state and ∂y_φ/∂γ."""

import pytest
import torch

from unetlab.diffenc import DiffEnc, NonTrainableEncoder, TrainableEncoder
from unetlab.vdm import VDM, FixedLinearSchedule, NoDownsampleUNet, alpha2_sigma2, ancestral_step, bins_to_x

F64 = torch.float64


def score_net(perturb: bool = True) -> NoDownsampleUNet:
    torch.manual_seed(0)
    net = NoDownsampleUNet(channels=8, n_blocks=1, norm_groups=4)
    if perturb:
        torch.nn.init.normal_(net.conv_out.weight, std=0.2)
    return net


def y_net(perturb: bool, fourier_exponents: tuple[int, ...] = ()) -> NoDownsampleUNet:
    torch.manual_seed(1)
    net = NoDownsampleUNet(
        channels=8,
        n_blocks=1,
        norm_groups=4,
        fourier_exponents=fourier_exponents,
        attention=False,
        add_input=False,
        output_tanh=True,
    )
    if perturb:
        torch.nn.init.normal_(net.conv_out.weight, std=0.3)
        torch.nn.init.normal_(net.conv_out.bias, std=0.3)
    return net


def build(kind: str, perturb: bool = True):
    schedule = FixedLinearSchedule()
    if kind == "vdm_v":
        return VDM(score_net(perturb), schedule, parameterization="v")
    encoder = TrainableEncoder(y_net(perturb)) if kind == "trainable" else NonTrainableEncoder()
    return DiffEnc(score_net(perturb), schedule, encoder)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = bins_to_x(torch.randint(0, 256, (3, 1, 8, 8), generator=g)).to(F64)
    eps = torch.randn(x.shape, generator=g, dtype=F64)
    return x, eps, torch.tensor([0.1, 0.5, 0.9], dtype=F64)


def discrete_kl_times_T(model, x, eps, t, T: int) -> torch.Tensor:
    """T·KL(q(z_s|z_t,x) ‖ p(z_s|z_t)) with s = t − 1/T, q the exact Gaussian posterior of the encoded marginals."""
    gamma_t, gamma_s = model.schedule(t), model.schedule(t - 1.0 / T)
    view = (-1, 1, 1, 1)
    x_t, x_s = model.encode(x, gamma_t), model.encode(x, gamma_s)
    (a2_t, s2_t), (a2_s, s2_s) = (tuple(a.view(view) for a in alpha2_sigma2(g)) for g in (gamma_t, gamma_s))
    z_t = a2_t.sqrt() * x_t + s2_t.sqrt() * eps
    delta = (gamma_s - gamma_t).view(view)
    # q(z_s|z_t,x): mean α_s x_s + Cov(z_s,z_t)/Var(z_t) (z_t − α_t x_t), variance −σ_s² expm1(γ_s − γ_t)
    mu_q = a2_s.sqrt() * x_s + (a2_s.sqrt() / a2_t.sqrt()) * torch.exp(delta) * (z_t - a2_t.sqrt() * x_t)
    var_q = -s2_s * torch.expm1(delta)
    x_hat = model.predict_x(z_t, gamma_t)
    mu_p, std_p = ancestral_step(z_t, x_hat, gamma_s.view(view), gamma_t.view(view), model.counter_term)
    assert torch.allclose(std_p**2, var_q, rtol=1e-12)
    return T * (torch.square(mu_q - mu_p) / (2 * var_q)).flatten(1).sum(1)


@pytest.mark.parametrize("kind", ["trainable", "nt", "vdm_v"])
def test_continuous_loss_is_limit_of_T_times_KL(kind):
    model = build(kind).to(F64)
    x, eps, t = batch()
    with torch.no_grad():
        closed_form = model.diffusion(x, t, eps)
        limit = discrete_kl_times_T(model, x, eps, t, T=2_000_000)
    rel = ((limit - closed_form).abs() / closed_form).max()
    assert float(rel) < 1e-4, f"relative error {float(rel):.2e}"


def test_at_initialisation_trainable_equals_non_trainable():
    trainable, fixed = build("trainable", perturb=False), build("nt", perturb=False)
    x, _, _ = batch(1)
    x = x.float()
    a = trainable.terms(x, torch.Generator().manual_seed(5))
    b = fixed.terms(x, torch.Generator().manual_seed(5))
    for k in ("reconstruction", "prior", "diffusion"):
        assert torch.equal(a[k], b[k]), k
    # ... and the encoder still learns: its zero-initialised last conv gets a gradient
    sum(v.mean() for v in a.values()).backward()
    assert float(trainable.encoder.y_net.conv_out.weight.grad.abs().sum()) > 0


def test_dy_dgamma_matches_finite_difference():
    encoder = TrainableEncoder(y_net(perturb=True)).to(F64)
    x, _, _ = batch(2)
    gamma = torch.tensor([-10.0, 0.3, 4.0], dtype=F64)
    with torch.no_grad():
        x_t, y, dy = encoder.with_y(x, gamma)
        h = 1e-6  # the time embedding oscillates ~55 rad per unit γ: keep h small
        fd = (encoder.y_net(x, gamma + h) - encoder.y_net(x, gamma - h)) / (2 * h)
        assert torch.allclose(x_t, encoder(x, gamma), rtol=1e-12)
        # the same float64 arithmetic in another order (group norm's statistics written out): rounding only
        assert torch.allclose(y, encoder.y_net(x, gamma), rtol=1e-12, atol=1e-14)
    assert float(dy.abs().max()) > 1e-3
    assert torch.allclose(dy, fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("fourier_exponents", [(), (2, 3)])
def test_dy_dgamma_and_its_gradients_match_torch_func_jvp(fourier_exponents):
    """The hand-written forward mode against torch.func.jvp on the unchanged y_net, values and parameter gradients."""
    encoder = TrainableEncoder(y_net(perturb=True, fourier_exponents=fourier_exponents)).to(F64)
    for block in [*encoder.y_net.down, *encoder.y_net.mid[::2], *encoder.y_net.up]:  # non-trivial affine norms
        for norm in (block.norm1, block.norm2):
            torch.nn.init.normal_(norm.weight, 1.0, 0.3)
            torch.nn.init.normal_(norm.bias, 0.0, 0.3)
    x, _, _ = batch(3)
    gamma = torch.tensor([-12.0, -1.5, 5.0], dtype=F64)
    params = dict(encoder.y_net.named_parameters())

    def loss(y, dy):
        return (y * torch.linspace(-1, 1, y.numel(), dtype=F64).view_as(y)).sum() + torch.square(dy).sum()

    _, y, dy = encoder.with_y(x, gamma)
    grads = torch.autograd.grad(loss(y, dy), list(params.values()))
    y_ref, dy_ref = torch.func.jvp(lambda g: encoder.y_net(x, g), (gamma,), (torch.ones_like(gamma),))
    grads_ref = torch.autograd.grad(loss(y_ref, dy_ref), list(params.values()))
    assert float(dy_ref.detach().abs().max()) > 1e-3
    assert torch.allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    assert torch.allclose(dy, dy_ref, rtol=1e-10, atol=1e-13)
    for name, g, g_ref in zip(params, grads, grads_ref):
        assert torch.allclose(g, g_ref, rtol=1e-9, atol=1e-12), name


def test_encoder_must_be_a_tanh_net():
    with pytest.raises(ValueError, match="output_tanh=True"):
        TrainableEncoder(score_net())
    for bad in ({"attention": True}, {"dropout": 0.1}):
        net = NoDownsampleUNet(channels=8, n_blocks=1, norm_groups=4, add_input=False, output_tanh=True, **bad)
        with pytest.raises(ValueError, match="attention=False, dropout=0"):
            TrainableEncoder(net)
    with pytest.raises(TypeError, match="encoder must be"):
        DiffEnc(score_net(), FixedLinearSchedule(), encoder=torch.nn.Identity())
