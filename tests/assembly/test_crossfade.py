import numpy as np
import pytest

from composer.assembly.crossfade import fade_curves


@pytest.mark.parametrize("n", [1, 7, 441, 96000])
def test_equal_power_curves_sum_power_to_one(n: int) -> None:
    out, inn = fade_curves(n, "equal_power")
    assert np.allclose(out**2 + inn**2, 1.0, atol=1e-6)
    assert np.all(np.diff(out) <= 0) and np.all(np.diff(inn) >= 0)


def test_linear_curves_sum_to_one() -> None:
    out, inn = fade_curves(100, "linear")
    assert np.allclose(out + inn, 1.0, atol=1e-6)
