"""Chapter 05 (the pig that becomes an airliner): its sizes at each budget.

Each setting is one row, ``(smoke, book, paper)``. ``*_steps`` are PGD or SGD steps; ``eps_hi`` and
``grid_eps`` are L-infinity budgets in pixel units.
"""
SETTINGS = dict(
    untargeted_steps=(5, 20, 30),  # PGD steps of the untargeted attack
    sgd_steps=(5, 100, 100),  # SGD steps of the tutorial's targeted recipe (its own: 100)
    sgd_untargeted_steps=(5, 30, 30),  # SGD steps of the tutorial's untargeted recipe (its own: 30)
    # whether the self-checks may assert SGD's outcome (needs the full 100 steps)
    sgd_outcome_known=(False, True, True),
    # whether they may assert the margin objective's outcome under PGD
    margin_outcome_known=(False, True, True),
    pgd_steps=(10, 40, 100),  # PGD steps of the targeted attacks
    min_p_target=(0.5, 0.9, 0.9),  # p(airliner) targeted PGD must reach
    # the targets of the smallest-eps search
    search_targets=([404], [342, 719, 404, 1, 859], [342, 719, 404, 1, 859, 850, 948]),
    search_probes=(1, 6, 8),  # bisection steps per target
    search_steps=(5, 10, 20),  # PGD steps per probe
    eps_hi=(4 / 255, 4 / 255, 8 / 255),  # the search's upper end
    # the heat map's targets and budgets
    grid_targets=([404, 342], [342, 719, 404, 1, 859], [342, 719, 404, 1, 859, 850, 948]),
    grid_eps=([2 / 255],
              [0.25 / 255, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255],
              [0.25 / 255, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255]),
    widget_steps=(3, 10, 20),  # PGD steps per redraw of the interactive panel
)
