r"""Everything :func:`advlib.train.fit` trains against, in one place and with one protocol.

Two kinds of object go into ``fit``:

- an **adversary** ``adversary(model, x, y, progress, index=None) -> x_in`` returns the inputs the
  step trains on, :math:`x_{in} = x + \delta`; ``progress`` in [0, 1) is the share of training done
  and ``index`` the positions of the batch's examples in the training set (an adversary with a
  memory per example, :class:`APART` with ``n_examples``, reads it). The step's loss is then
  :math:`L(h(x_{in}), y)` (plus a clean term with ``fit(..., clean_weight=w)``);
- a **regulariser** ``regularizer(model, x, progress, y=None) -> R`` adds a scalar to the loss,
  computed on the labelled batch (with its labels ``y``) or, with ``fit(..., unlabelled=x_u)``, on
  batches of ``x_u`` (``y`` is None).

``fit`` hands ``index`` and ``y`` to whatever takes an argument of that name (:func:`accepts`), so a
hand-written ``adversary(model, x, y, progress)`` or ``regularizer(model, x, progress)`` needs neither.

The same conventions hold for every factory here:

- ``eps`` is a number or a **schedule** ``progress -> eps`` (:func:`linear_ramp`, IAT's
  :func:`staircase`, or any function); at eps 0 an adversary returns ``x``;
- a step size is **absolute**, ``alpha``, or a **multiple of the eps of the moment**,
  ``alpha_ratio``, never both; only ``alpha_ratio`` follows a schedule (:func:`step_size`);
- the attack runs in eval mode, never touches a parameter's ``.grad`` and returns a detached input
  (except :class:`APART`'s, which carries the graph to its own two parameters).

=======================  =========================================  =======
what ``fit`` trains      call                                       chapter
=======================  =========================================  =======
FGSM training            ``adversary=fgsm(eps)``                    04
FGSM-RS (Wong et al.)    ``adversary=fgsm_rs(eps)``                 09
PGD-K (Madry et al.)     ``adversary=pgd(eps, steps=K)``            07
extended training, IAT   ``adversary=pgd(staircase(0.4, 8), ...)``  10
N-FGSM                   ``adversary=nfgsm(eps)``                   09
APART-style              ``adversary=APART(eps)``                   09
FGM + clean term         ``adversary=fgm(eps), clean_weight=0.5``   06
VAT, RPT                 ``regularizer=vat(eps)``, ``rpt(eps)``     06
GradAlign                ``regularizer=gradalign(eps, 0.2)``        09
TRADES                   ``regularizer=trades(eps, 6.0, ...)``      07
=======================  =========================================  =======

Taught in :ref:`ch-pgd-training`.
"""
from ._apart import APART
from ._perturbations import fgm, fgsm, fgsm_rs, nfgsm, pgd
from ._protocol import Adversary, Regularizer, Schedule, accepts, as_schedule, linear_ramp, ramped, staircase, step_size
from ._regularizers import gradalign, rpt, trades, trades_perturbation, vat

__all__ = ["linear_ramp", "ramped", "staircase", "as_schedule", "step_size", "accepts",
           "fgsm", "fgsm_rs", "pgd", "fgm", "nfgsm", "APART", "vat", "rpt", "gradalign", "trades",
           "trades_perturbation"]
