"""Chapter 05 (the pig that becomes an airliner): its sizes at each budget.

``*_steps`` are PGD or SGD steps; ``eps_hi`` and ``grid_eps`` are L-infinity budgets in pixel units.
"""
SMOKE = dict(
    untargeted_steps=5,  # PGD steps of the untargeted attack
    sgd_steps=5,  # SGD steps of the tutorial's targeted recipe (its own: 100)
    sgd_untargeted_steps=5,  # SGD steps of the tutorial's untargeted recipe (its own: 30)
    sgd_outcome_known=False,  # whether the self-checks may assert SGD's outcome (needs the full 100 steps)
    margin_outcome_known=False,  # whether they may assert the margin objective's outcome under PGD
    pgd_steps=10,  # PGD steps of the targeted attacks
    min_p_target=0.5,  # p(airliner) targeted PGD must reach
    search_targets=[404],  # the targets of the smallest-eps search
    search_probes=1,  # bisection steps per target
    search_steps=5,  # PGD steps per probe
    eps_hi=4 / 255,  # the search's upper end
    grid_targets=[404, 342],  # the heat map's targets
    grid_eps=[2 / 255],  # and budgets
    widget_steps=3,  # PGD steps per redraw of the interactive panel
)
BOOK = dict(
    untargeted_steps=20,
    sgd_steps=100,
    sgd_untargeted_steps=30,
    sgd_outcome_known=True,
    margin_outcome_known=True,
    pgd_steps=40,
    min_p_target=0.9,
    search_targets=[342, 719, 404, 1, 859],
    search_probes=6,
    search_steps=10,
    eps_hi=4 / 255,
    grid_targets=[342, 719, 404, 1, 859],
    grid_eps=[0.25 / 255, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255],
    widget_steps=10,
)
PAPER = dict(
    untargeted_steps=30,
    sgd_steps=100,
    sgd_untargeted_steps=30,
    sgd_outcome_known=True,
    margin_outcome_known=True,
    pgd_steps=100,
    min_p_target=0.9,
    search_targets=[342, 719, 404, 1, 859, 850, 948],
    search_probes=8,
    search_steps=20,
    eps_hi=8 / 255,
    grid_targets=[342, 719, 404, 1, 859, 850, 948],
    grid_eps=[0.25 / 255, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255],
    widget_steps=20,
)
