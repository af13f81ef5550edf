"""A smoke test, not a benchmark: a tiny model built on a compiled variant learns."""
import pytest
import torch
import torch.nn.functional as F

from flexla.variants import get
from test_unseen_variants import GatedFeatureDecay


class TinyLM(torch.nn.Module):
    def __init__(self, variant, vocab=11, H=2, D=16, gated=True):
        super().__init__()
        self.variant, self.H, self.D, self.gated = variant, H, D, gated
        self.embed = torch.nn.Embedding(vocab, H * D)
        self.qkvg = torch.nn.Linear(H * D, 3 * H * D + H)
        self.out = torch.nn.Linear(H * D, vocab)

    def forward(self, tokens):
        B, T = tokens.shape
        x = self.embed(tokens)
        q, k, v, g = self.qkvg(x).split([self.H * self.D] * 3 + [self.H], -1)
        shape = (B, T, self.H, self.D)
        extras = [F.logsigmoid(g)] if self.gated else []
        if self.variant is GatedFeatureDecay:
            extras = [g, -torch.full((self.H,), 0.05)]
        o, _ = self.variant(q.reshape(shape), k.reshape(shape), v.reshape(shape), *extras)
        return self.out(o.reshape(B, T, -1) + x)


@pytest.mark.parametrize("name", ["simple_gla", "linear_attn", "unseen"])
def test_a_few_steps_lower_the_loss(name):
    torch.manual_seed(0)
    variant = GatedFeatureDecay if name == "unseen" else get(name)
    model = TinyLM(variant, gated=name != "linear_attn")
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    tokens = torch.arange(40).remainder(7).reshape(2, 20)          # a periodic sequence to predict
    losses = []
    for _ in range(8):
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
