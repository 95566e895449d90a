"""Sample selection's criterion on small known cases: greedy largest posterior variance, each pick conditioned on."""

import numpy as np
import pytest

from latfarm.predictor.selection import select_by_variance

# rows: a head's variance along x is 1.5^2 = 2.25 at C, 1.4^2 = 1.96 at D, along y 1.3^2 = 1.69 at B (identity prior)
C, D, B = 0, 1, 2
PHI = np.array([[1.5, 0.0], [1.4, 0.0], [0.0, 1.3]])


def test_first_pick_is_the_largest_prior_variance_and_each_next_is_conditioned_on_it():
    # after C is measured, D (same direction) has almost no variance left: B comes second, D last
    assert select_by_variance(PHI, np.eye(2), 1e-3, 3) == [C, B, D]


def test_noise_decides_how_much_a_pick_teaches_about_its_direction():
    # with noise far above the prior variance, measuring C leaves D's variance above B's
    assert select_by_variance(PHI, np.eye(2), 1e3, 2) == [C, D]


def test_correlations_in_the_covariance_count():
    # x and y correlated 0.99, z independent: measuring C (x) also pins y, so Z (z, 1.44) comes before Y (y, 1.69)
    phi = np.array([[1.5, 0.0, 0.0], [0.0, 1.3, 0.0], [0.0, 0.0, 1.2]])
    correlated = np.array([[1.0, 0.99, 0.0], [0.99, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert select_by_variance(phi, np.eye(3), 1e-3, 3) == [0, 1, 2]
    assert select_by_variance(phi, correlated, 1e-3, 3) == [0, 2, 1]


def test_excluded_rows_are_never_picked_and_too_many_is_an_error():
    assert select_by_variance(PHI, np.eye(2), 1e-3, 2, exclude=[C]) == [D, B]
    with pytest.raises(ValueError, match="cannot select 3 archs: 2 are available"):
        select_by_variance(PHI, np.eye(2), 1e-3, 3, exclude=[C])
