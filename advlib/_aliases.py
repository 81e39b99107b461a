"""The old names of what :func:`advlib.train.fit` trains against, kept until the chapters that call
them are re-executed with :mod:`advlib.adversaries`; each chapter's pass removes the ones it used.

``ALIASES`` maps each old dotted name to its new one. Where an old factory took ``eps_ramp`` (a
linear ramp of eps) and an ``alpha`` that was absolute at the full eps and scaled with the ramp, it
calls the new one with ``eps=linear_ramp(eps, eps_ramp)`` and ``alpha_ratio=alpha / eps``: the same
steps.
"""
from __future__ import annotations

from . import adversaries as adv

ALIASES = {
    "advlib.train.fgsm_adversary": "advlib.adversaries.fgsm",
    "advlib.train.fgsm_rs_adversary": "advlib.adversaries.fgsm_rs",
    "advlib.train.pgd_adversary": "advlib.adversaries.pgd",
    "advlib.train.fgm_adversary": "advlib.adversaries.fgm",
    "advlib.train.vat_regularizer": "advlib.adversaries.vat",
    "advlib.train.rpt_regularizer": "advlib.adversaries.rpt",
    "advlib.fast.gradalign_regularizer": "advlib.adversaries.gradalign",
    "advlib.fast.APARTAdversary": "advlib.adversaries.APART",
    "advlib.large_eps.staircase_eps": "advlib.adversaries.staircase",
    "advlib.large_eps.scheduled_pgd_adversary": "advlib.adversaries.pgd",
}


def _alias_of(new):
    def mark(old):
        old.__doc__ = f"Old name of :func:`advlib.adversaries.{new.__name__}`, to be removed."
        old.alias_of = new
        return old
    return mark


@_alias_of(adv.fgsm)
def fgsm_adversary(eps, *, eps_ramp=0.0):
    return adv.fgsm(adv.ramped(eps, None, eps_ramp)["eps"])


@_alias_of(adv.fgsm_rs)
def fgsm_rs_adversary(eps, *, alpha=None, eps_ramp=0.0, clip_start=True):
    return adv.fgsm_rs(**adv.ramped(eps, alpha, eps_ramp), clip_start=clip_start)


@_alias_of(adv.pgd)
def pgd_adversary(eps, *, alpha=None, steps=7, norm="inf", random_start=True, eps_ramp=0.0):
    return adv.pgd(**adv.ramped(eps, alpha, eps_ramp), steps=steps, norm=norm, random_start=random_start)


@_alias_of(adv.fgm)
def fgm_adversary(eps, *, norm=2, bounds=None, eps_ramp=0.0):
    return adv.fgm(adv.ramped(eps, None, eps_ramp)["eps"], norm=norm, bounds=bounds)


@_alias_of(adv.vat)
def vat_regularizer(eps, *, xi=1e-6, power_iterations=1, weight=1.0, eps_ramp=0.0):
    return adv.vat(adv.ramped(eps, None, eps_ramp)["eps"], xi=xi, power_iterations=power_iterations,
                   weight=weight)


@_alias_of(adv.rpt)
def rpt_regularizer(eps, *, weight=1.0):
    return adv.rpt(eps, weight=weight)


@_alias_of(adv.pgd)
def scheduled_pgd_adversary(eps_at, *, steps=5, step_ratio=2.5, norm="inf"):
    return adv.pgd(eps_at, steps=steps, alpha_ratio=step_ratio / steps, norm=norm)


gradalign_regularizer = adv.gradalign
APARTAdversary = adv.APART
staircase_eps = adv.staircase
