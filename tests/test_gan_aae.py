"""advlib.gan, advlib.aae and their networks (advlib.models.gan, advlib.models.autoencoders): shapes,
training steps, priors, MMD, GAN theory."""
import copy
import math

import numpy as np
import pytest
import torch

from advlib import aae, evaluate, gan
from advlib.models import autoencoders as mae
from advlib.models import gan as mgan


def _params(*modules):
    return [p.detach().clone() for m in modules for p in m.parameters()]


def _changed(before, *modules):
    after = [p.detach() for m in modules for p in m.parameters()]
    return any(not torch.equal(a, b) for a, b in zip(before, after))


# ----------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_mnist_gan_shapes(kind):
    torch.manual_seed(0)
    G, D = mgan.mnist_gan(kind, z_dim=16)
    x = G(torch.randn(5, 16))
    assert x.shape == (5, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert D(x).shape == (5,)


def test_toy_and_conditional_shapes():
    G, D = mgan.toy_gan(dim=2, z_dim=3, hidden=16)
    assert G(torch.randn(7, 3)).shape == (7, 2)
    assert D(torch.randn(7, 2)).shape == (7,)
    Dc = mgan.MLPDiscriminator((2,), (8,), cond_dim=11)
    assert Dc(torch.randn(4, 2), torch.zeros(4, 11)).shape == (4,)
    with pytest.raises(ValueError, match="c must"):
        Dc(torch.randn(4, 2))
    with pytest.raises(ValueError, match="z must"):
        G(torch.randn(7, 4))


def test_autoencoder_shapes():
    x = torch.rand(6, 1, 28, 28)
    assert mae.Encoder(z_dim=3, hidden=(32,))(x).shape == (6, 3)
    mu, logvar = mae.GaussianEncoder(z_dim=2, hidden=(32,))(x)
    assert mu.shape == logvar.shape == (6, 2)
    logits, z = mae.SemiSupervisedEncoder(num_classes=10, z_dim=4, hidden=(32, 16))(x)
    assert logits.shape == (6, 10) and z.shape == (6, 4)
    dec = mae.Decoder(4, hidden=(32,), cond_dim=10)
    out = dec(z, torch.zeros(6, 10))
    assert out.shape == (6, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    view = mae.ClassifierView(mae.SemiSupervisedEncoder(hidden=(8,)))
    assert view(x).shape == (6, 10)


@pytest.mark.parametrize("bad", [dict(z_dim=0), dict(out="relu"), dict(hidden=(0,)), dict(out_shape=(0,))])
def test_bad_arguments_raise(bad):
    with pytest.raises(ValueError):
        mgan.MLPGenerator(**bad)


# -------------------------------------------------------------------------- one training step
def test_gan_step_changes_both_players():
    torch.manual_seed(0)
    G, D = mgan.toy_gan(dim=2, z_dim=2, hidden=16)
    before = _params(G, D)
    real = torch.randn(64, 2) + 3
    for loss in ("ns", "minimax"):
        hist = gan.train_gan(G, D, real, steps=2, batch_size=32, loss=loss, progress=False)
        assert np.isfinite(hist[["d_loss", "g_loss", "d_real", "d_fake"]].to_numpy()).all()
    assert _changed(before[:len(list(G.parameters()))], G) and _changed(before[len(list(G.parameters())):], D)
    with pytest.raises(ValueError, match="kind"):
        gan.train_gan(G, D, real, steps=1, loss="wasserstein", progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        gan.train_gan(G, D, real, progress=False)


def test_train_gan_on_images_with_sampler_and_callback():
    torch.manual_seed(0)
    G, D = mgan.MLPGenerator(8, (1, 28, 28), (16,)), mgan.MLPDiscriminator((1, 28, 28), (16,))
    seen = []
    hist = gan.train_gan(G, D, lambda n: torch.rand(n, 1, 28, 28), steps=3, batch_size=4, log_every=1,
                         callback=lambda g, d, row: seen.append(row["step"]), progress=False)
    assert list(hist.step) == [1, 2, 3] == seen


def test_packed_and_minibatch_std_discriminators():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    packed = mgan.MLPDiscriminator((1, 28, 28), (16,), pack=3)
    assert packed(x).shape == (2,)
    # a pack is its examples side by side: swapping two packs swaps their logits
    swapped = torch.cat([x[3:], x[:3]])
    assert torch.allclose(packed(swapped), packed(x).flip(0))
    with pytest.raises(ValueError, match="multiple of 3"):
        packed(x[:5])
    with pytest.raises(ValueError, match="pack"):
        mgan.MLPDiscriminator((2,), (8,), cond_dim=3, pack=2)
    mb = mgan.MLPDiscriminator((1, 28, 28), (16, 8), minibatch_std=True, dropout=0.1)
    assert mb(x).shape == (6,)
    with pytest.raises(ValueError, match="at least one hidden"):
        mgan.MLPDiscriminator((2,), (), minibatch_std=True)
    layer = mgan.MinibatchStd()
    same, mixed = torch.ones(4, 5), torch.randn(4, 5)
    assert torch.equal(layer(same)[:, -1], torch.zeros(4))  # no diversity, the feature is 0
    assert (layer(mixed)[:, -1] > 0).all() and layer(mixed).shape == (4, 6)
    assert torch.equal(layer(mixed)[:, :5], mixed)
    # the feature couples the examples of a batch: one example changes every logit
    y = x.clone()
    y[0] = 0
    assert not torch.allclose(mb.eval()(x)[1:], mb(y)[1:])
    with pytest.raises(ValueError, match="at least 2"):
        layer(mixed[:1])
    # both train with train_gan
    G = mgan.MLPGenerator(8, (1, 28, 28), (16,))
    for D in (packed, mb):
        hist = gan.train_gan(G, D, torch.rand(24, 1, 28, 28), steps=2, batch_size=6, progress=False)
        assert np.isfinite(hist.d_loss).all()


def test_one_sided_label_smoothing():
    a = 0.9
    logit = torch.tensor([math.log(a / (1 - a))], requires_grad=True)
    # the real term's minimiser is D(x) = a: zero gradient at logit(a)
    loss = gan.discriminator_loss(logit, torch.tensor([-30.0]), real_label=a)
    (g,) = torch.autograd.grad(loss, logit)
    assert abs(g.item()) < 1e-6
    real, fake = torch.randn(5), torch.randn(5)
    assert gan.discriminator_loss(real, fake, 1.0) == gan.discriminator_loss(real, fake)
    assert gan.discriminator_loss(real, fake, 0.9) != gan.discriminator_loss(real, fake)
    for bad in (0.5, 1.1):
        with pytest.raises(ValueError, match="real_label"):
            gan.discriminator_loss(real, fake, bad)
    G, D = mgan.toy_gan(dim=2, z_dim=2, hidden=8)
    with pytest.raises(ValueError, match="real_label"):
        gan.train_gan(G, D, torch.randn(16, 2), steps=1, batch_size=8, real_label=0.3, progress=False)


def test_class_balance():
    even = gan.class_balance(torch.arange(100) % 10)
    assert even["entropy"] == pytest.approx(math.log(10)) and even["min_share"] == even["max_share"] == 0.1
    skewed = gan.class_balance(np.array([9] * 7 + [0, 1, 2]), n_classes=10)
    assert skewed["max_class"] == 9 and skewed["max_share"] == pytest.approx(0.7)
    assert skewed["min_share"] == 0.0 and skewed["min_class"] == 3 and skewed["n"] == 10
    assert skewed["entropy"] == pytest.approx(-(0.7 * math.log(0.7) + 3 * 0.1 * math.log(0.1)))
    assert gan.class_balance(torch.zeros(5, dtype=torch.long))["entropy"] == 0.0
    with pytest.raises(ValueError, match="labels must be in"):
        gan.class_balance(torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="empty"):
        gan.class_balance(torch.tensor([], dtype=torch.long))


def test_mode_coverage_counts_shares_among_high_quality_samples():
    ring = torch.tensor([[math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)] for k in range(8)]) * 2
    on_modes = gan.mode_coverage(ring.repeat(5, 1), ring, 0.15)
    assert on_modes["hq"] == 1.0 and np.allclose(on_modes["shares"], 1 / 8)
    assert on_modes["entropy"] == pytest.approx(math.log(8))
    # few samples of high quality, one at each mode, among many between the modes (12 per mode): every
    # mode holds under 1% of all samples, which a fixed share of all samples would count as dropped,
    # yet each holds 1/8 of the high-quality ones
    between = 0.5 * ring.repeat(12, 1)
    sparse = gan.mode_coverage(torch.cat([ring, between]), ring, 0.15)
    assert sparse["hq"] == pytest.approx(1 / 13) and np.allclose(sparse["shares"], 1 / 8)
    far = gan.mode_coverage(0.5 * ring, ring, 0.15)
    assert far["hq"] == 0.0 and (far["shares"] == 0).all() and far["entropy"] == 0.0
    mixed = gan.mode_coverage(torch.cat([ring[:1].repeat(3, 1), torch.zeros(1, 2)]), ring, 0.15)
    assert mixed["hq"] == 0.75 and mixed["shares"][0] == 1.0 and mixed["max_share"] == 1.0
    with pytest.raises(ValueError, match="samples"):
        gan.mode_coverage(torch.zeros(4, 3), ring, 0.15)
    with pytest.raises(ValueError, match="radius"):
        gan.mode_coverage(ring, ring, 0.0)


def test_mode_drops_need_k_consecutive_absent_logs():
    present, gone = 0.5, 0.0
    flicker = [[present, present], [present, gone], [present, gone], [present, present]]  # 2 logs: no drop
    out = gan.mode_drops(np.array(flicker), floor=0.1, k=3)
    assert out["drops"] == 0 and out["dropped_modes"] == [] and out["lost_at_end"] == []
    assert out["present"].tolist() == [2, 1, 1, 2]
    lost = np.array(flicker + [[present, gone]] * 3)  # then absent for 3 logs: one drop, lost at the end
    out = gan.mode_drops(lost, floor=0.1, k=3)
    assert out["drops"] == 1 and out["dropped_modes"] == [1] and out["lost_at_end"] == [1]
    twice = np.array([[present, present]] + [[gone, present]] * 3 + [[present, present]] + [[gone, present]] * 4)
    assert gan.mode_drops(twice, floor=0.1, k=3)["drops"] == 2  # one run counts once, however long
    never = np.array([[present, gone]] * 5)  # absent from the start: never held, so never dropped
    out = gan.mode_drops(never, floor=0.1, k=3)
    assert out["drops"] == 0 and out["lost_at_end"] == [1]
    with pytest.raises(ValueError, match="shares"):
        gan.mode_drops(np.zeros(4), floor=0.1)
    with pytest.raises(ValueError, match="floor"):
        gan.mode_drops(lost, floor=0.0)
    with pytest.raises(ValueError, match="k"):
        gan.mode_drops(lost, floor=0.1, k=0)


def test_discriminator_alone_learns_two_gaussians():
    torch.manual_seed(0)
    _, D = mgan.toy_gan(dim=1, hidden=16)
    hist = gan.train_discriminator(D, lambda n: torch.randn(n, 1) - 2, lambda n: torch.randn(n, 1) + 2,
                                   steps=200, batch_size=128, lr=3e-3, progress=False)
    with torch.no_grad():
        d = torch.sigmoid(D(torch.tensor([[-3.0], [3.0]])))
    assert d[0] > 0.9 and d[1] < 0.1
    assert hist.value.iloc[-1] > -math.log(4)  # better than a constant 1/2


def test_aae_vae_ae_one_step_each():
    torch.manual_seed(0)
    x = torch.rand(40, 1, 28, 28)
    y = torch.randint(0, 10, (40,))
    enc, dec, disc = mae.Encoder(z_dim=2, hidden=(16,)), mae.Decoder(2, hidden=(16,)), mgan.MLPDiscriminator((2,), (16,))
    before = _params(enc, dec, disc)
    h = aae.train_aae(enc, dec, disc, (x, y), aae.GaussianPrior(2), steps=1, batch_size=20, progress=False)
    assert _changed(before, enc, dec, disc) and np.isfinite(h[["rec", "d_loss", "g_loss"]].to_numpy()).all()
    # label information in the regulariser, with some unlabelled (-1) images: the discriminator gets
    # the one-hot label (class 10 for unlabelled) and the prior sample of the label's component
    y_part = torch.where(torch.arange(40) % 2 == 0, y, torch.full_like(y, -1))
    seen = []

    class SpyDisc(mgan.MLPDiscriminator):
        def forward(self, z, c=None):
            seen.append((z.detach().clone(), c.clone()))
            return super().forward(z, c)

    prior = aae.MixturePrior(10, radius=20.0, std=(0.1, 0.1))  # far-apart, narrow components
    h = aae.train_aae(enc, dec, SpyDisc((2,), (16,), cond_dim=11), (x, y_part), prior, steps=2, batch_size=40,
                      label_prior=True, progress=False)
    z_prior, c = seen[0]                               # first call: the prior samples
    want = torch.where(y_part >= 0, y_part, torch.full_like(y_part, 10))
    order = c.argmax(1)
    assert torch.equal(c.sum(1), torch.ones(40)) and torch.equal(order.sort().values, want.sort().values)
    nearest = torch.cdist(z_prior, prior.means).argmin(1)
    labelled = order < 10
    assert torch.equal(nearest[labelled], order[labelled])  # each labelled code's target is its own component
    assert list(h.step) == [1, 2]
    # supervised AAE: the label goes into the decoder
    got = []

    class SpyDecoder(mae.Decoder):
        def forward(self, z, c=None):
            got.append(c.clone())
            return super().forward(z, c)

    h = aae.train_aae(enc, SpyDecoder(2, hidden=(16,), cond_dim=10), disc, (x, y), aae.GaussianPrior(2), steps=1,
                      batch_size=40, label_decoder=True, progress=False)
    assert len(got) == 1 and torch.equal(got[0].sum(1), torch.ones(40))
    assert torch.equal(got[0].argmax(1).sort().values, y.sort().values)
    dec_c = mae.Decoder(2, hidden=(16,), cond_dim=10)
    # VAE with both priors, plain autoencoder
    venc = mae.GaussianEncoder(z_dim=2, hidden=(16,))
    for prior in (aae.GaussianPrior(2), aae.MixturePrior(10)):
        before = _params(venc, dec)
        h = aae.train_vae(venc, dec, x, prior, steps=1, batch_size=20, progress=False)
        assert _changed(before, venc, dec) and np.isfinite(h[["rec", "kl"]].to_numpy()).all()
    before = _params(enc, dec)
    h = aae.train_autoencoder(enc, dec, x, steps=1, batch_size=20, progress=False)
    assert _changed(before, enc, dec) and np.isfinite(h.rec).all()
    assert aae.encode(venc, x).shape == (40, 2) and aae.encode(enc, x).shape == (40, 2)


def test_semi_supervised_aae_one_step():
    torch.manual_seed(0)
    x = torch.rand(40, 1, 28, 28)
    y = torch.randint(0, 10, (40,))
    enc = mae.SemiSupervisedEncoder(num_classes=10, z_dim=3, hidden=(16,))
    dec = mae.Decoder(3, hidden=(16,), cond_dim=10)
    dy, dz = mgan.MLPDiscriminator((10,), (8,)), mgan.MLPDiscriminator((3,), (8,))
    before = _params(enc, dec, dy, dz)
    h = aae.train_semi_supervised_aae(enc, dec, dy, dz, x, (x[:10], y[:10]), steps=1, batch_size=20,
                                      val=(x, y), progress=False)
    assert _changed(before, enc, dec, dy, dz)
    assert np.isfinite(h[["rec", "d_loss", "g_loss", "ce", "val_error"]].to_numpy()).all()
    assert aae.classify(enc, x).shape == (40,) and aae.encode(enc, x).shape == (40, 3)
    with pytest.raises(ValueError, match="cond_dim"):
        aae.train_semi_supervised_aae(enc, mae.Decoder(3, hidden=(16,)), dy, dz, x, (x[:10], y[:10]), steps=1)


# ----------------------------------------------------------------------------------- priors
def test_gaussian_prior_statistics():
    p = aae.GaussianPrior(dim=3, std=2.0)
    z = p.sample(20000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (20000, 3)
    assert z.mean(0).abs().max() < 0.1 and (z.std(0) - 2.0).abs().max() < 0.1
    ref = torch.distributions.Normal(0.0, 2.0).log_prob(z).sum(1)
    assert torch.allclose(p.log_prob(z), ref, atol=1e-5)


def test_mixture_prior_labels_and_density():
    p = aae.MixturePrior(10, radius=4.0, std=(1.0, 0.3))
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(500)
    z = p.sample(5000, labels=labels, generator=g)
    assert z.shape == (5000, 2)
    for k in range(10):
        m = z[labels == k].mean(0)
        assert (m - p.means[k]).norm() < 0.15
    # the nearest mean is the requested component for nearly all samples
    nearest = torch.cdist(z, p.means).argmin(1)
    assert (nearest == labels).float().mean() > 0.9
    # unlabelled (-1) rows use every component
    free = p.sample(5000, labels=torch.full((5000,), -1), generator=g)
    counts = torch.bincount(torch.cdist(free, p.means).argmin(1), minlength=10)
    assert counts.min() > 300
    # log_prob is a density: it integrates to about 1 on a grid
    t = torch.linspace(-10, 10, 401)
    gx, gy = torch.meshgrid(t, t, indexing="ij")
    dens = p.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp().sum() * (t[1] - t[0]) ** 2
    assert abs(dens.item() - 1.0) < 0.01
    with pytest.raises(ValueError, match="labels"):
        p.sample(3, labels=torch.tensor([0, 10, 1]))


# -------------------------------------------------------------------------------------- MMD
def test_mmd():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 2, generator=g)
    b = torch.randn(500, 2, generator=g)
    c = torch.randn(500, 2, generator=g) * 2 + 1
    assert evaluate.mmd2(a, a) == pytest.approx(0.0, abs=1e-10)
    same, diff = evaluate.mmd2(a, b), evaluate.mmd2(a, c)
    assert abs(evaluate.mmd2(a, b, unbiased=True)) < 0.01
    assert diff > 10 * same and diff > 0.1
    with pytest.raises(ValueError):
        evaluate.mmd2(a, torch.randn(5, 3))


# ------------------------------------------------------------------------------- GAN theory
def test_optimal_discriminator_and_js():
    x = np.linspace(-10, 10, 20001)
    dx = x[1] - x[0]
    p = np.exp(-0.5 * x ** 2) / math.sqrt(2 * math.pi)
    q = np.exp(-0.5 * (x - 1) ** 2) / math.sqrt(2 * math.pi)
    d = gan.optimal_discriminator(p, q)
    assert np.all((d >= 0) & (d <= 1))
    js = gan.js_divergence(p, q, dx)
    assert 0 < js < math.log(2)
    assert gan.js_divergence(p, p, dx) == pytest.approx(0.0, abs=1e-12)
    assert gan.gan_value(p, q, d, dx) == pytest.approx(-math.log(4) + 2 * js, abs=1e-6)
    # any other discriminator does worse
    assert gan.gan_value(p, q, np.full_like(x, 0.5), dx) == pytest.approx(-math.log(4), abs=1e-6)
    assert gan.gan_value(p, q, np.clip(d + 0.05, 0, 1), dx) < gan.gan_value(p, q, d, dx)
    # disjoint supports: JS = log 2
    p2, q2 = (np.abs(x) < 1) / 2.0, (np.abs(x - 5) < 1) / 2.0
    assert gan.js_divergence(p2, q2, dx) == pytest.approx(math.log(2), rel=1e-3)


def test_aae_schedule_decays_the_learning_rates():
    torch.manual_seed(0)
    x = torch.rand(60, 1, 28, 28)
    parts = (mae.Encoder(z_dim=2, hidden=(16,)), mae.Decoder(2, hidden=(16,)), mgan.MLPDiscriminator((2,), (16,)))

    def run(schedule, steps):
        enc, dec, disc = (copy.deepcopy(m) for m in parts)
        aae.train_aae(enc, dec, disc, x, aae.GaussianPrior(2), steps=steps, batch_size=20, schedule=schedule,
                      progress=False)
        return torch.cat([p.detach().flatten() for m in (enc, dec, disc) for p in m.parameters()])

    # the first step runs at the full rate, so one step of a decay equals one constant step
    assert torch.equal(run("linear", 1), run("constant", 1))
    # later steps are smaller: after three steps the decayed run has moved less far from the start
    start = torch.cat([p.detach().flatten() for m in parts for p in m.parameters()])
    assert (run("linear", 3) - start).norm() < (run("constant", 3) - start).norm()
    with pytest.raises(ValueError, match="schedule"):
        run("exponential", 1)


def test_no_loop_touches_the_global_random_state():
    torch.manual_seed(0)
    x = torch.rand(40, 1, 28, 28)
    y = torch.randint(0, 10, (40,))
    g = torch.Generator().manual_seed(0)
    G, D = mgan.toy_gan(dim=2, z_dim=2, hidden=8)
    enc, dec, disc = mae.Encoder(z_dim=2, hidden=(8,)), mae.Decoder(2, hidden=(8,)), mgan.MLPDiscriminator((2,), (8,))
    venc = mae.GaussianEncoder(z_dim=2, hidden=(8,))
    senc = mae.SemiSupervisedEncoder(num_classes=10, z_dim=2, hidden=(8,))
    sdec = mae.Decoder(2, hidden=(8,), cond_dim=10)
    dy, dz = mgan.MLPDiscriminator((10,), (8,)), mgan.MLPDiscriminator((2,), (8,))
    real = lambda n: torch.randn(n, 2, generator=g)  # noqa: E731
    state = torch.get_rng_state()
    gan.train_gan(G, D, real, steps=2, batch_size=8, progress=False)
    gan.train_discriminator(D, real, lambda n: torch.rand(n, 2, generator=g), steps=2, batch_size=8, progress=False)
    aae.train_autoencoder(enc, dec, x, steps=2, batch_size=20, progress=False)
    aae.train_aae(enc, dec, disc, (x, y), aae.MixturePrior(10), steps=2, batch_size=20, progress=False)
    aae.train_vae(venc, dec, x, aae.MixturePrior(10), steps=2, batch_size=20, progress=False)
    aae.train_semi_supervised_aae(senc, sdec, dy, dz, x, (x[:10], y[:10]), steps=2, batch_size=20, progress=False)
    aae.train_semi_supervised_aae(senc, sdec, dy, dz, x, (x[:10], y[:10]), steps=2, batch_size=20,
                                  input_noise=0.3, progress=False)
    assert torch.equal(torch.get_rng_state(), state), "a training loop drew from (or reseeded) the global generator"


def test_explicit_generators_make_runs_repeatable():
    torch.manual_seed(0)
    x = torch.rand(40, 1, 28, 28)
    venc, dec = mae.GaussianEncoder(z_dim=2, hidden=(8,)), mae.Decoder(2, hidden=(8,))

    def vae(seed):
        e, d = copy.deepcopy(venc), copy.deepcopy(dec)
        return aae.train_vae(e, d, x, aae.GaussianPrior(2), steps=3, batch_size=20, progress=False,
                             generator=torch.Generator().manual_seed(seed)).rec.to_numpy()

    assert np.array_equal(vae(1), vae(1)) and not np.array_equal(vae(1), vae(2))


# ------------------------------------------------------- semi-supervised AAE: noise, batches, BN
def test_semi_supervised_aae_input_noise_and_labelled_batches(monkeypatch):
    torch.manual_seed(0)
    x = torch.rand(40, 1, 28, 28)
    y = torch.randint(0, 10, (40,))
    seen, targets = [], []

    class SpyEncoder(mae.SemiSupervisedEncoder):
        def forward(self, inputs):
            seen.append(inputs.detach().clone())
            return super().forward(inputs)

    real_rec = aae.reconstruction_loss

    def spy_rec(x_hat, target):
        targets.append(target.detach().clone())
        return real_rec(x_hat, target)

    monkeypatch.setattr(aae, "reconstruction_loss", spy_rec)

    def run(noise, **kw):
        seen.clear(), targets.clear()
        torch.manual_seed(1)
        enc = SpyEncoder(num_classes=10, z_dim=3, hidden=(16,))
        dec = mae.Decoder(3, hidden=(16,), cond_dim=10)
        dy, dz = mgan.MLPDiscriminator((10,), (8,)), mgan.MLPDiscriminator((3,), (8,))
        h = aae.train_semi_supervised_aae(enc, dec, dy, dz, x, (x[:10], y[:10]), steps=1, batch_size=20,
                                          input_noise=noise, progress=False, **kw)
        return h, enc

    rows = {tuple(r.flatten().tolist()[:5]) for r in x}
    h, _ = run(0.0)
    # three phases, three encoder calls: reconstruction and regularisation on one unlabelled batch,
    # classification on a labelled one (all 10 labelled images: the batch is clipped to the set)
    assert [s.shape[0] for s in seen] == [20, 20, 10]
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[0], targets[0])
    assert torch.equal(seen[2].sort(0).values, x[:10].sort(0).values)
    h, _ = run(0.5)
    assert not torch.equal(seen[0], seen[1]), "each phase draws its own noise"
    assert all(tuple(r.flatten().tolist()[:5]) in rows for r in targets[0]), "the target is the clean image"
    assert (seen[0] - targets[0]).std().item() == pytest.approx(0.5, rel=0.1)
    assert np.isfinite(h.ce).all()
    h, _ = run(0.0, labelled_batch_size=4)
    assert seen[2].shape[0] == 4
    with pytest.raises(ValueError, match="input_noise"):
        run(-0.1)
    with pytest.raises(ValueError, match="labelled_batch_size"):
        run(0.0, labelled_batch_size=0)


def test_semi_supervised_encoder_batch_norm():
    torch.manual_seed(0)
    enc = mae.SemiSupervisedEncoder(num_classes=10, z_dim=3, hidden=(16, 8), batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in enc.modules()) == 2  # before each ReLU
    logits, z = enc(torch.rand(6, 1, 28, 28))
    assert logits.shape == (6, 10) and z.shape == (6, 3)
    plain = mae.SemiSupervisedEncoder(num_classes=10, z_dim=3, hidden=(16, 8))
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())
    enc.eval()
    x = torch.rand(6, 1, 28, 28)
    assert torch.allclose(enc(x)[0][:1], enc(x[:1])[0], atol=1e-6), "eval mode uses the running statistics"


def test_encode_draws_from_a_gaussian_posterior():
    torch.manual_seed(0)
    venc = mae.GaussianEncoder(z_dim=2, hidden=(8,)).train()
    x = torch.rand(3, 1, 28, 28).repeat(4000, 1, 1, 1)
    mu, logvar = venc.eval()(x[:3])
    venc.train()
    z = aae.encode(venc, x, sample=True, generator=torch.Generator().manual_seed(0)).view(4000, 3, 2)
    assert venc.training, "the mode is restored"
    assert torch.allclose(z.mean(0), mu.detach(), atol=0.05 * logvar.exp().sqrt().max().item() + 1e-3)
    assert torch.allclose(z.std(0), (0.5 * logvar).exp().detach(), rtol=0.05)
    assert torch.equal(aae.encode(venc, x[:3]), mu.detach()), "the default is the mean"
    again = aae.encode(venc, x, sample=True, generator=torch.Generator().manual_seed(0)).view(4000, 3, 2)
    assert torch.equal(z, again)
    with pytest.raises(ValueError, match="GaussianEncoder"):
        aae.encode(mae.Encoder(z_dim=2, hidden=(8,)), x[:3], sample=True)
