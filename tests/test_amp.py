"""The one switch for bf16 autocast, ``ADVLIB_AMP=0|1|auto``, overrides every ``amp=`` argument."""
import pytest
import torch

from advlib import train
from advlib.utils import bf16_is_native, resolve_amp


@pytest.mark.parametrize("amp", [True, False, "auto"])
def test_switch_overrides_the_argument(monkeypatch, amp):
    monkeypatch.setenv("ADVLIB_AMP", "0")
    assert resolve_amp(amp, "cpu") is False
    monkeypatch.setenv("ADVLIB_AMP", "1")
    assert resolve_amp(amp, "cpu") is True
    monkeypatch.setenv("ADVLIB_AMP", "auto")
    assert resolve_amp(amp, "cpu") is bf16_is_native("cpu")


def test_unset_switch_keeps_the_argument(monkeypatch):
    monkeypatch.delenv("ADVLIB_AMP", raising=False)
    assert resolve_amp(True, "cpu") is True and resolve_amp(False, "cpu") is False
    assert resolve_amp("auto", "cpu") is bf16_is_native("cpu")


def test_bad_switch_and_bad_argument_name_themselves(monkeypatch):
    monkeypatch.setenv("ADVLIB_AMP", "yes please")
    with pytest.raises(ValueError, match="ADVLIB_AMP"):
        resolve_amp(False, "cpu")
    monkeypatch.delenv("ADVLIB_AMP")
    with pytest.raises(ValueError, match="amp must be"):
        resolve_amp("bf16", "cpu")


@pytest.mark.parametrize("switch", ["0", "1"])
def test_fit_runs_in_the_forced_precision(monkeypatch, tiny, switch):
    monkeypatch.setenv("ADVLIB_AMP", switch)
    seen = []
    tiny.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    x, y = torch.rand(32, 1, 12, 12), torch.randint(0, 10, (32,))
    hist = train.fit(tiny, (x, y), epochs=1, batch_size=16, amp=False, progress=False)
    assert bool(hist.bf16.iloc[-1]) is (switch == "1")
    assert set(seen) == {torch.bfloat16 if switch == "1" else torch.float32}


def test_the_compute_path_is_announced_once_per_device_type(monkeypatch, capsys):
    """fit says once which arithmetic this machine trains in (bf16 native or float32) and what it costs."""
    from advlib import utils

    monkeypatch.setattr(utils, "_ANNOUNCED", set())
    monkeypatch.setattr(utils, "bf16_is_native", lambda device=None: False)
    first = utils.announce_compute_path("cpu", False)
    assert "no native bfloat16 (AVX2-only" in first and "float32" in first
    assert utils.announce_compute_path("cpu", False) is None
    assert capsys.readouterr().out.count("advlib:") == 1
    monkeypatch.setattr(utils, "_ANNOUNCED", set())
    assert "emulated" in utils.announce_compute_path("cpu", True)
    monkeypatch.setattr(utils, "_ANNOUNCED", set())
    monkeypatch.setattr(utils, "bf16_is_native", lambda device=None: True)
    assert "natively (AVX512-BF16 or AMX); this training runs in bf16 autocast" in utils.announce_compute_path("cpu", True)
