"""Chapter 04 (FGSM, "explaining and harnessing"): its sizes at each budget.

Each setting is one row, ``(smoke, book, paper)``. Radii are L-infinity, in pixel units; the chapter's
own eps, the paper's 0.25, is fixed in the notebook.
"""
SETTINGS = dict(
    n_test=(200, 10000, 10000),  # MNIST test images of the FGSM columns, the label-leaking and transfer tables
    eps_values=([0.0, 0.1, 0.2, 0.3],
                [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
                [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]),
    # FGSM training of the Madry CNN (the same optimiser and schedule as chapter 00's standard model)
    fgsm_train=(dict(n_train=2000, epochs=1, batch_size=50, lr=1e-3, amp=False, evals=1),
                dict(n_train=60000, epochs=3, batch_size=128, lr=1e-3, amp="auto", evals=6),
                dict(n_train=60000, epochs=20, batch_size=100, lr=1e-3, amp=False, evals=20)),
    n_probe=(50, 500, 1000),  # the last test images, attacked at every evaluation during training
    n_pgd=(64, 1000, 10000),  # the seeded PGD subset of the test images
    pgd_steps=(10, 40, 100),
    pgd_alpha=(0.05, 0.01, 0.01),
    pgd_restarts=(1, 2, 5),
    n_pgd_curve=(50, 500, 2000),  # the first images of the PGD subset, for the PGD curves and the headline
    pgd_curve_eps=([0.1, 0.25], [0.1, 0.2, 0.25, 0.3], [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]),
    n_walk=(32, 200, 1000),  # test images walked along their FGSM direction
    n_logreg=(2000, 12000, 12000),  # training 3s and 7s of the logistic regression
    logreg_eps=([0.0, 0.1], [0.0, 0.05, 0.1, 0.15, 0.2], [0.0, 0.05, 0.1, 0.15, 0.2, 0.25]),
)
