r"""Adversarially regularised autoencoders for sentences (Zhao, Kim, Zhang, Rush & LeCun 2018).
Chapter 03 (:ref:`ch-arae`).

A sentence :math:`x` is encoded by an LSTM into a code :math:`c = \mathrm{enc}_\phi(x)` on the unit
sphere and decoded back by an LSTM :math:`p_\psi(x \mid c)`. A generator :math:`g_\theta(s)`,
:math:`s \sim \mathcal N(0, I)`, learns a prior over codes, and a WGAN critic :math:`f_w` estimates
the Wasserstein-1 distance between the codes :math:`P_Q` and the prior :math:`P_Z`:

.. math:: \min_{\phi, \psi, \theta} \; L_{\mathrm{rec}}(\phi, \psi) + \lambda_1 W(P_Q, P_Z), \qquad
          W(P_Q, P_Z) = \max_{\|f_w\|_L \le 1} \mathbb E_x[f_w(\mathrm{enc}_\phi(x))] - \mathbb E_s[f_w(g_\theta(s))].

One :func:`arae_round` makes the updates of the paper's Algorithm 1: (1) reconstruction,
(2) ``critic_steps`` critic steps (WGAN-GP: the Lipschitz constraint as a gradient penalty),
(3) the encoder against the critic (gradient scaled by ``lambda_critic``) and the generator against
it. For unaligned attribute transfer there is one decoder per attribute and a classifier
:math:`p_u(y \mid c)` on the codes: (4) the classifier learns the attribute from the codes, and the
encoder learns to fool it (weight ``lambda_class``), so the codes lose the attribute and the chosen
decoder puts it back. ``lambda_critic = lambda_class = 0`` is the plain autoencoder (the critic and
generator are still trained on its codes, but do not push on them).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .text import SentimentCorpus, Vocab, pad_batch
from . import loops
from .utils import check_int, check_labels, draw, eval_mode, model_device

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # inputs, targets, lengths, labels


def _mlp(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class ARAE(nn.Module):
    """Encoder, ``n_attributes`` decoders, code generator, critic and code classifier.

    The encoder LSTM (``hidden`` units) reads the embedded tokens and its last state becomes a
    ``code``-dimensional vector normalised to the unit sphere. Each decoder is an LSTM fed the word
    embedding concatenated with the code at every step, followed by a linear layer to the vocabulary.
    The generator maps ``noise``-dimensional Gaussian noise through an MLP (``mlp`` units, ReLU) to a
    code; the critic (LeakyReLU 0.2) maps a code to a score; the classifier maps a code to attribute
    logits.
    """

    def __init__(self, vocab_size: int, n_attributes: int = 2, embed: int = 128, hidden: int = 128,
                 code: int = 64, noise: int = 32, mlp: int = 128) -> None:
        super().__init__()
        for name, v in dict(vocab_size=vocab_size, n_attributes=n_attributes, embed=embed, hidden=hidden,
                            code=code, noise=noise, mlp=mlp).items():
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.vocab_size, self.n_attributes, self.code_dim, self.noise_dim = vocab_size, n_attributes, code, noise
        self.enc_embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.encoder = nn.LSTM(embed, hidden, batch_first=True)
        self.to_code = nn.Linear(hidden, code)
        self.dec_embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.decoders = nn.ModuleList(nn.LSTM(embed + code, hidden, batch_first=True) for _ in range(n_attributes))
        self.outputs = nn.ModuleList(nn.Linear(hidden, vocab_size) for _ in range(n_attributes))
        self.generator = _mlp([noise, mlp, mlp, code], nn.ReLU)
        self.critic = _mlp([code, mlp, mlp, 1], lambda: nn.LeakyReLU(0.2))
        self.classifier = _mlp([code, mlp, n_attributes], nn.ReLU)

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """Encoder and decoder parameters (what the reconstruction step trains).

        Taught in :ref:`ch-arae`."""
        parts = [self.enc_embedding, self.encoder, self.to_code, self.dec_embedding, self.decoders, self.outputs]
        return [p for m in parts for p in m.parameters()]

    def encode(self, targets: torch.Tensor, lengths: torch.Tensor, noise_std: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Codes ``(N, code)`` of the sentences ``targets`` (``w_1 .. w_T <eos>``, padded), on the unit
        sphere, plus Gaussian noise of std ``noise_std`` (drawn from ``generator``) when it is > 0.

        Taught in :ref:`ch-arae`."""
        packed = nn.utils.rnn.pack_padded_sequence(self.enc_embedding(targets), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = self.encoder(packed)
        code = F.normalize(self.to_code(h[-1]), dim=1)
        if noise_std > 0:
            code = code + noise_std * draw(torch.randn, code.shape, generator=generator, dtype=code.dtype, device=code.device)
        return code

    def decode_logits(self, code: torch.Tensor, inputs: torch.Tensor, attribute: int) -> torch.Tensor:
        """Teacher-forced next-token logits ``(N, L, vocab)`` of decoder ``attribute`` given the codes
        and the decoder inputs ``<bos> w_1 .. w_T``.

        Taught in :ref:`ch-arae`."""
        self._check_attribute(attribute)
        emb = self.dec_embedding(inputs)
        out, _ = self.decoders[attribute](torch.cat([emb, code[:, None].expand(-1, emb.shape[1], -1)], dim=2))
        return self.outputs[attribute](out)

    def reconstruction_loss(self, code: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
                            labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per scored token, each sentence decoded by the decoder of its own label.

        Taught in :ref:`ch-arae`."""
        total = code.new_zeros(())
        for a in range(self.n_attributes):
            rows = labels == a
            if rows.any():
                logits = self.decode_logits(code[rows], inputs[rows], a)
                total = total + F.cross_entropy(logits.flatten(0, 1), targets[rows].flatten(), ignore_index=0,
                                                reduction="sum")
        return total / (targets != 0).sum()

    @torch.no_grad()
    def greedy_decode(self, code: torch.Tensor, attribute: int, max_len: int = 25) -> torch.Tensor:
        """The argmax token at each step from ``<bos>``, fed back, for ``max_len`` (>= 1) steps: ``(N, max_len)``.

        Taught in :ref:`ch-arae`."""
        self._check_attribute(attribute)
        check_int(max_len, "max_len", minimum=1)
        token = torch.full((len(code), 1), 1, dtype=torch.long, device=code.device)  # <bos>
        state, out = None, []
        for _ in range(max_len):
            step = torch.cat([self.dec_embedding(token), code[:, None]], dim=2)
            h, state = self.decoders[attribute](step, state)
            token = self.outputs[attribute](h).argmax(dim=2)
            out.append(token)
        return torch.cat(out, dim=1)

    def sample_codes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes of the learned prior, :math:`g_\\theta(s)` with :math:`s \\sim N(0, I)`.

        Taught in :ref:`ch-arae`."""
        weight = self.generator[0].weight
        s = draw(torch.randn, (n, self.noise_dim), generator=generator, dtype=weight.dtype, device=weight.device)
        return self.generator(s)

    def _check_attribute(self, attribute: int) -> None:
        if not 0 <= int(attribute) < self.n_attributes:
            raise ValueError(f"attribute must be in 0..{self.n_attributes - 1}, got {attribute!r}")


@dataclass(frozen=True)
class ARAESettings:
    """The weights and step counts of one :func:`arae_round` (defaults: the paper's Yelp settings,
    except the autoencoder's optimiser, see :func:`make_optimizers`).
    """

    lambda_critic: float = 0.01   # scale of the critic's gradient into the encoder (lambda_1)
    lambda_class: float = 1.0     # weight of the encoder's loss against the code classifier (lambda_2)
    critic_steps: int = 5
    gradient_penalty: float = 0.1
    clip: float = 1.0             # gradient-norm clip of the reconstruction step

    def __post_init__(self) -> None:
        for name in ("lambda_critic", "lambda_class", "gradient_penalty", "clip"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not isinstance(self.critic_steps, int) or self.critic_steps < 1:
            raise ValueError(f"critic_steps must be a positive int, got {self.critic_steps!r}")


@dataclass
class ARAEOptimizers:
    """One optimiser per player: autoencoder (also used for the encoder's adversarial steps, as in
    the paper's code, so that their weights ``lambda_*`` set their size relative to the
    reconstruction's), critic, generator and code classifier.
    """

    autoencoder: torch.optim.Optimizer
    critic: torch.optim.Optimizer
    generator: torch.optim.Optimizer
    classifier: torch.optim.Optimizer


def make_optimizers(model: ARAE, lr_autoencoder: float = 1e-3, lr_gan: float = 1e-4,
                    lr_classifier: float = 1e-4) -> ARAEOptimizers:
    """Adam for every player. The paper's code trains the autoencoder with SGD at lr 1 for tens of
    epochs over 450k sentences; for a few thousand steps Adam at ``lr_autoencoder`` converges faster.
    The critic and generator use Adam(``lr_gan``, betas (0.5, 0.9)) as in WGAN-GP.
    """
    adam = torch.optim.Adam
    return ARAEOptimizers(
        autoencoder=adam(model.autoencoder_parameters(), lr=lr_autoencoder),
        critic=adam(model.critic.parameters(), lr=lr_gan, betas=(0.5, 0.9)),
        generator=adam(model.generator.parameters(), lr=lr_gan, betas=(0.5, 0.9)),
        classifier=adam(model.classifier.parameters(), lr=lr_classifier, betas=(0.5, 0.9)),
    )


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    r"""WGAN-GP's :math:`\mathbb E_{\hat c}[(\|\nabla f_w(\hat c)\| - 1)^2]` at random interpolates
    :math:`\hat c = u\, c_{\mathrm{real}} + (1 - u)\, c_{\mathrm{fake}}`, :math:`u \sim U(0, 1)`.
    """
    u = draw(torch.rand, (len(real), 1), generator=generator, dtype=real.dtype, device=real.device)
    mixed = (u * real + (1 - u) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float | None = None) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)
    optimizer.step()


def arae_round(model: ARAE, optimizers: ARAEOptimizers, batches: Sequence[Batch], settings: ARAESettings,
               noise_std: float, generator: torch.Generator | None = None) -> dict[str, float]:
    """One round of updates on ``1 + settings.critic_steps`` batches (the first one for the
    autoencoder, the classifier and the adversarial steps, one per critic step), in the paper's order:

    1. reconstruction: minimise :math:`L_{\\mathrm{rec}}` of the noisy codes;
    2. classifier (if ``lambda_class > 0``): minimise its cross-entropy on the detached codes; then the
       encoder minimises ``lambda_class`` times the cross-entropy towards the *flipped* labels;
    3. ``critic_steps`` critic steps: minimise :math:`f_w(g(s)) - f_w(c) + \\text{gp}`;
    4. encoder (if ``lambda_critic > 0``): minimise ``lambda_critic`` :math:`\\cdot f_w(c)`;
    5. generator: minimise :math:`-f_w(g(s))`.

    Steps 1, 2 (encoder) and 4 use the autoencoder's optimiser with the gradient norm clipped at ``clip``.

    Noise (code noise, prior samples, interpolation weights) comes from ``generator``. Returns the
    losses of the round (``w_distance`` is the critic's last estimate :math:`f_w(c) - f_w(g(s))`).
    The first batch's ``labels`` must be attributes of the model (``ValueError`` before any update).
    """
    if len(batches) != 1 + settings.critic_steps:
        raise ValueError(f"batches must hold 1 + critic_steps = {1 + settings.critic_steps} batches, got {len(batches)}")
    inputs, targets, lengths, labels = batches[0]
    check_labels(labels, len(targets), "labels", model.n_attributes)
    model.train()
    opt, log = optimizers, {}
    # 1. reconstruction
    code = model.encode(targets, lengths, noise_std, generator)
    rec = model.reconstruction_loss(code, inputs, targets, labels)
    _step(opt.autoencoder, rec, settings.clip)
    log["reconstruction"] = rec.item()
    # 2. code classifier, then the encoder against it
    if settings.lambda_class > 0:
        class_loss = F.cross_entropy(model.classifier(model.encode(targets, lengths).detach()), labels)
        _step(opt.classifier, class_loss)
        fooled = F.cross_entropy(model.classifier(model.encode(targets, lengths)), model.n_attributes - 1 - labels)
        _step(opt.autoencoder, settings.lambda_class * fooled, settings.clip)
        log["classifier"] = class_loss.item()
    # 3. critic steps, each on a fresh batch of codes
    for _, t, n, _ in batches[1:]:
        with torch.no_grad():
            real = model.encode(t, n)
            fake = model.sample_codes(len(t), generator)
        gp = gradient_penalty(model.critic, real, fake, generator)
        w = model.critic(real).mean() - model.critic(fake).mean()
        _step(opt.critic, -w + settings.gradient_penalty * gp)
        log["w_distance"] = w.item()
    # 4. the encoder against the critic, 5. the generator against it
    if settings.lambda_critic > 0:
        _step(opt.autoencoder, settings.lambda_critic * model.critic(model.encode(targets, lengths)).mean(),
              settings.clip)
    g_loss = -model.critic(model.sample_codes(len(targets), generator)).mean()
    _step(opt.generator, g_loss)
    log["generator"] = g_loss.item()
    for p in model.critic.parameters():  # the critic's gradients from steps 4-5 are not kept
        p.grad = None
    if not all(math.isfinite(v) for v in log.values()):
        raise FloatingPointError(f"a loss of the ARAE round is not finite: {log}")
    return log


def train_arae(model: ARAE, corpus: SentimentCorpus, steps: int, batch_size: int = 64,
               settings: ARAESettings | None = None, noise_std: float = 0.1, noise_decay: float = 0.9995,
               lr_autoencoder: float = 1e-3, lr_gan: float = 1e-4, lr_classifier: float = 1e-4,
               log_every: int = 100, seed: int = 0, progress: bool | None = None) -> pd.DataFrame:
    """``steps`` rounds of :func:`arae_round` on the training split of ``corpus``; the code noise
    starts at ``noise_std`` and is multiplied by ``noise_decay`` every 100 rounds (the paper's
    annealing). Returns the history (losses averaged over each ``log_every`` rounds, held-out
    reconstruction token accuracy, ``time``: the seconds of training so far, the held-out evaluations
    left out); leaves the model in eval mode. The loop is a :class:`advlib.loops.Run`.
    """
    settings = ARAESettings() if settings is None else settings
    check_int(steps, "steps", minimum=1)
    run = loops.Run((model,), steps, log_every=check_int(log_every, "log_every", minimum=1), desc="arae",
                    progress=progress)
    device = model_device(model)
    optimizers = make_optimizers(model, lr_autoencoder, lr_gan, lr_classifier)
    stream = corpus.batches(batch_size, seed=seed, device=device)
    generator = torch.Generator().manual_seed(seed + 1)
    rows, window, evaluating, start = [], [], 0.0, time.perf_counter()
    for step in run:
        noise = noise_std * noise_decay ** ((step - 1) // 100)
        window.append(arae_round(model, optimizers, [next(stream) for _ in range(1 + settings.critic_steps)],
                                 settings, noise, generator))
        if step in run.log_at:
            row = {"step": step, "noise_std": noise}
            row.update(pd.DataFrame(window).mean().to_dict())
            began = time.perf_counter()
            row["test_token_accuracy"] = token_accuracy(model, corpus.test[:500], corpus.vocab)
            evaluating += time.perf_counter() - began
            row["time"] = time.perf_counter() - start - evaluating
            rows.append(row)
            window = []
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------- using the model
def _batches_of(sequences: Sequence[Sequence[int]], size: int = 256) -> Iterator[tuple[int, Sequence[Sequence[int]]]]:
    for start in range(0, len(sequences), size):
        yield start, sequences[start: start + size]


@torch.no_grad()
def token_accuracy(model: ARAE, rows: Sequence[tuple[Sequence[int], int]], vocab: Vocab) -> float:
    """Teacher-forced next-token accuracy of reconstructing ``(ids, label)`` rows with each row's own
    decoder, over all scored positions (``<eos>`` included). No rows is an error, not an accuracy.
    """
    if len(rows) == 0:
        raise ValueError("rows must hold at least one (ids, label) row, got none")
    with eval_mode(model):
        device, right, total = model_device(model), 0, 0
        for _, chunk in _batches_of(rows):
            inputs, targets, lengths = pad_batch([s for s, _ in chunk], vocab, device)
            labels = torch.tensor([y for _, y in chunk], device=device)
            code = model.encode(targets, lengths)
            for a in range(model.n_attributes):
                r = labels == a
                if r.any():
                    pred = model.decode_logits(code[r], inputs[r], a).argmax(dim=2)
                    mask = targets[r] != 0
                    right += (pred[mask] == targets[r][mask]).sum().item()
                    total += mask.sum().item()
    return right / max(total, 1)


@torch.no_grad()
def encode_sentences(model: ARAE, sequences: Sequence[Sequence[int]], vocab: Vocab) -> torch.Tensor:
    """Noise-free codes ``(N, code)`` of id sequences.
    """
    with eval_mode(model):
        out = []
        for _, chunk in _batches_of(sequences):
            _, targets, lengths = pad_batch(chunk, vocab, model_device(model))
            out.append(model.encode(targets, lengths))
    return torch.cat(out)


@torch.no_grad()
def decode_codes(model: ARAE, codes: torch.Tensor, vocab: Vocab, attribute: int, max_len: int = 25
                 ) -> list[list[str]]:
    """Greedy decodings of ``codes`` by decoder ``attribute``, as token lists.
    """
    with eval_mode(model):
        out = [vocab.decode(row) for row in model.greedy_decode(codes, attribute, max_len).tolist()]
    return out


def transfer(model: ARAE, vocab: Vocab, sentences: Sequence[Sequence[int]], target: int | Sequence[int],
             max_len: int = 25) -> list[list[str]]:
    """Unaligned attribute transfer: encode each id sequence and decode it with the decoder of
    ``target`` (one attribute for all, or one per sentence). With ``target`` the sentence's own
    attribute this is its reconstruction. No sentences give no transfers (``[]``).
    """
    targets = [int(target)] * len(sentences) if isinstance(target, int) else [int(t) for t in target]
    if len(targets) != len(sentences):
        raise ValueError(f"target must be one int or one per sentence ({len(sentences)}), got {len(targets)}")
    for a in ({target} if isinstance(target, int) else set(targets)):
        model._check_attribute(a)
    check_int(max_len, "max_len", minimum=1)
    if len(sentences) == 0:
        return []
    codes = encode_sentences(model, sentences, vocab)
    out: list[list[str]] = [[] for _ in sentences]
    for a in sorted(set(targets)):
        rows = [i for i, t in enumerate(targets) if t == a]
        for i, tokens in zip(rows, decode_codes(model, codes[rows], vocab, a, max_len)):
            out[i] = tokens
    return out


# --------------------------------------------------------------------- a language model for perplexity
class LanguageModel(nn.Module):
    """A one-layer LSTM language model :math:`p(w_t \\mid w_{<t})`, for the perplexity of generated
    or transferred sentences.
    """

    def __init__(self, vocab_size: int, embed: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.output = nn.Linear(hidden, vocab_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(N, L, vocab)`` for decoder-style inputs ``<bos> w_1 .. w_T``.

        Taught in :ref:`ch-arae`."""
        return self.output(self.lstm(self.embedding(inputs))[0])


def train_language_model(model: LanguageModel, sequences: Sequence[Sequence[int]], vocab: Vocab,
                         steps: int, batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> LanguageModel:
    """Adam on the mean token cross-entropy of random batches of ``sequences``; returns the model in
    eval mode.
    """
    check_int(steps, "steps", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    if len(sequences) < batch_size:
        raise ValueError(f"sequences must hold at least batch_size = {batch_size} sequences, got {len(sequences)}")
    device = model_device(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = draw(torch.randint, len(sequences), (batch_size,), generator=g).tolist()
        inputs, targets, _ = pad_batch([sequences[i] for i in idx], vocab, device)
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=0)
        _step(opt, loss, 1.0)
    return model.eval()


@torch.no_grad()
def perplexity(model: LanguageModel, sequences: Sequence[Sequence[int]], vocab: Vocab) -> float:
    """:math:`\\exp` of the mean token negative log-likelihood of ``sequences`` (``<eos>`` scored),
    empty sequences skipped.
    """
    sequences = [s for s in sequences if len(s) > 0]
    if not sequences:
        raise ValueError("sequences must hold at least one non-empty sequence")
    with eval_mode(model):
        nll, count = 0.0, 0
        for _, chunk in _batches_of(sequences):
            inputs, targets, _ = pad_batch(chunk, vocab, model_device(model))
            nll += F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=0,
                                   reduction="sum").item()
            count += (targets != 0).sum().item()
    return math.exp(nll / count)


__all__ = ["ARAE", "ARAEOptimizers", "ARAESettings", "LanguageModel", "arae_round", "decode_codes",
           "encode_sentences", "gradient_penalty", "make_optimizers", "perplexity",
           "token_accuracy", "train_arae", "train_language_model", "transfer"]
