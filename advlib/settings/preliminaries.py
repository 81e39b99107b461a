"""Chapter 00 (preliminaries): its sizes at each budget.

Each setting is one row, ``(smoke, book, paper)``. ``eps_values`` are L-infinity radii in pixel units.
"""
SETTINGS = dict(
    n_test=(500, 10000, 10000),  # MNIST test images the attacks are measured on
    eps_values=([0.0, 0.1, 0.2, 0.25, 0.3],
                [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
                [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]),
    # training-set sizes of the learning curves, and the draws of a training set at each size
    curve_sizes=([10, 80, 640],
                 [6, 10, 20, 40, 80, 160, 320, 640, 2560],
                 [6, 10, 20, 40, 80, 160, 320, 640, 2560, 10240]),
    curve_draws=(3, 40, 100),
    curve_test=(2000, 20000, 20000),  # test points of each learning-curve problem
    softmax_epochs=(0.2, 3, 10),  # passes over the 60k MNIST images for the linear softmax model
)
