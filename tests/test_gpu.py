"""The device-dependent paths on a CUDA GPU: seeded random starts, chapter 09's diagnostics and early
stopping, evaluation, bf16 autocast and a training step. Skipped where there is no GPU (CI runs on
CPUs); ``bash tests/gpu_smoke.sh`` runs them with the rest of the suite on a GPU."""
import pytest
import torch
from torch import nn

from advlib import adversaries, attacks, evaluate, fast, train, utils

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


@pytest.fixture
def on_gpu():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
    return cnn().cuda().eval(), x.cuda(), y.cuda()


def test_seeded_pgd_on_the_gpu_takes_cpu_and_cuda_generators(on_gpu):
    """F23: a CUDA generator crashed random_delta's CPU draw; both kinds now work, and a CPU
    generator gives the GPU the same random start as the CPU."""
    m, x, y = on_gpu
    a = attacks.pgd(m, x, y, eps=0.1, steps=3, generator=utils.new_generator(1))
    b = attacks.pgd(m, x, y, eps=0.1, steps=3, generator=utils.new_generator(1))
    assert torch.equal(a, b) and a.device == x.device
    attacks.pgd(m, x, y, eps=0.1, steps=3, generator=torch.Generator(device=x.device).manual_seed(1))
    start_gpu = attacks.random_delta(x, 0.1, "inf", utils.new_generator(2))
    start_cpu = attacks.random_delta(x.cpu(), 0.1, "inf", utils.new_generator(2))
    assert torch.equal(start_gpu.cpu(), start_cpu)


def test_chapter_09_diagnostics_and_early_stopping_run_on_the_gpu(on_gpu):
    m, x, y = on_gpu
    d = fast.fgsm_diagnostics(m, x, y, 0.1, pgd_steps=3)
    assert 0 <= d["pgd_acc"] <= d["fgsm_acc"] + 1 and -1 <= d["grad_alignment"] <= 1
    es = fast.RobustEarlyStopping(x, y, 0.1, steps=2)
    row = {}
    es(m, row)
    assert 0 <= row["es_pgd_acc"] <= 1


def test_evaluation_and_a_bf16_training_step_on_the_gpu(on_gpu):
    m, x, y = on_gpu
    report = evaluate.robustness(m, x, y, evaluate.attack("pgd", eps=0.1, steps=3))
    assert report.mask.device == x.device
    hist = train.fit(m, (x, y), epochs=1, batch_size=16, adversary=adversaries.pgd(0.1, steps=2),
                     amp=utils.bf16_is_native("cuda"), progress=False)
    assert len(hist) == 1 and all(p.is_cuda for p in m.parameters())
