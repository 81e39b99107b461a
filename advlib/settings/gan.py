"""Chapter 01 (GAN): its sizes at each budget.

Each setting is one row, ``(smoke, book, paper)``. The MNIST GANs' own settings are the
``gan_mnist`` recipe's (:mod:`advlib.zoo`); here are the chapter's experiments around them.
"""
SETTINGS = dict(
    d_steps_1d=(500, 3000, 5000),  # steps of each 1-D discriminator (batches of 512 per side)
    d_lr_1d=(3e-3, 1e-3, 1e-3),  # its Adam learning rate
    small_d_seeds=([0, 1], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]),  # starts of the 2-unit discriminator
    ring_steps=(400, 4000, 20000),  # generator steps of each ring GAN
    ring_log_every=(10, 25, 100),  # steps between the logs of where the samples land
    ring_seeds=([0, 1], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    drop_logs=(3, 3, 3),  # consecutive absent logs that make a mode dropped
    ring_snapshots=([0, 20, 40], [0, 100, 200], [0, 500, 1000]),  # early steps drawn
    sat_pretrain=(50, 200, 200),  # discriminator steps against the initial generator
    sat_steps=(50, 300, 300),  # generator steps after it, with each loss
    mnist_seeds=([0, 1], [0, 1, 2], [0, 1, 2, 3, 4]),  # runs of each MNIST pair
    n_eval=(2000, 10000, 10000),  # samples (and real test digits) the classifier judges
    d_star_tol=(0.12, 0.10, 0.05),  # largest |D - D*| allowed where the densities have mass
)
