import os

import pytest
import torch
from torch import nn

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


class TinyNet(nn.Module):
    """A small fixed CNN for 1x12x12 inputs, 10 classes; with dropout and batch norm so that a mode
    change would show."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 6 * 6, 10))

    def forward(self, x):
        return self.body(x)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = TinyNet()
    # give the batch-norm layer non-trivial running statistics
    with torch.no_grad():
        model.body[1].running_mean.uniform_(-0.1, 0.1)
        model.body[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, 1, 12, 12, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    return x, y


def shared_data_root():
    """The data root holding MNIST, or None. The repository's conftest.py sets ``ADVLIB_DATA`` to
    ``../shared/data`` when it is unset and that folder exists."""
    cand = os.environ.get("ADVLIB_DATA")
    if cand and os.path.isfile(os.path.join(cand, "MNIST", "raw", "t10k-images-idx3-ubyte")):
        return cand
    return None


@pytest.fixture
def assert_leaves_model_untouched():
    """A checker: ``check(model, fn)`` puts ``model`` in a mixed train/eval mode with every parameter
    gradient set to 7, calls ``fn()``, and asserts that the modes, the gradients and the state dict
    (weights and batch-norm running statistics) are exactly as before."""

    def check(model: nn.Module, fn) -> None:
        model.train()
        model.body[1].eval()  # a mixed mode must be restored exactly
        modes = [m.training for m in model.modules()]
        for p in model.parameters():
            p.grad = torch.full_like(p, 7.0)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        fn()
        assert [m.training for m in model.modules()] == modes, "train/eval modes changed"
        assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters()), "parameter grads changed"
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), "weights or running statistics changed"

    return check
