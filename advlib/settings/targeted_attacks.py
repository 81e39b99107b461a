"""Chapter 05 (the pig that becomes an airliner): its sizes at each budget.

Each setting is one row, ``(smoke, book, paper)``. ``*_steps`` are PGD or SGD steps; ``eps_hi``,
``many_eps_hi`` and ``grid_eps`` are L-infinity budgets in pixel units.
"""
SETTINGS = dict(
    untargeted_steps=(5, 20, 30),  # PGD steps of the untargeted attack
    sgd_steps=(5, 100, 100),  # SGD steps of the tutorial's targeted recipe (its own: 100)
    sgd_untargeted_steps=(5, 30, 30),  # SGD steps of the tutorial's untargeted recipe (its own: 30)
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
    # the same search on many images: CIFAR-10 test images (data.eval_subset), each attacked at its
    # own 32x32 pixels, towards the classes at these ranks of its clean prediction
    many_n=(2, 30, 50),
    many_ranks=([2, 1000], [2, 10, 1000], [2, 3, 10, 100, 1000]),
    many_probes=(2, 7, 8),  # bisection steps per (image, target) pair
    many_steps=(3, 10, 20),  # PGD steps per probe
    many_eps_hi=(8 / 255, 8 / 255, 16 / 255),  # the search's upper end
)
