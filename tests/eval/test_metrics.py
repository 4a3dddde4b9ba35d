"""CKA, the covariance spectrum and the Pareto front against their definitions, on random matrices."""

import numpy as np
import pytest
import torch

from prefixmemory_study.diagnostics import metrics


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Appendix B.3 as written: HSIC with linear-kernel Gram matrices and the centering matrix H."""
    m = x.shape[0]
    h = np.eye(m) - np.ones((m, m)) / m
    kx, ky = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (m - 1) ** 2

    return hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))


@pytest.fixture
def xy():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 12, generator=generator, dtype=torch.float64)
    noise = torch.randn(40, 7, generator=generator, dtype=torch.float64)
    y = x @ torch.randn(12, 7, generator=generator, dtype=torch.float64) + 0.5 * noise
    return x, y


def test_cka_of_a_representation_with_itself_is_one(xy):
    x, _ = xy
    assert metrics.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_matches_the_hsic_definition(xy):
    x, y = xy
    assert metrics.linear_cka(x, y) == pytest.approx(_hsic_cka(x.numpy(), y.numpy()), rel=1e-10)
    assert 0.0 < metrics.linear_cka(x, y) < 1.0


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling(xy):
    x, y = xy
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    reference = metrics.linear_cka(x, y)
    assert metrics.linear_cka(x @ q, y) == pytest.approx(reference, rel=1e-10)
    assert metrics.linear_cka(3.7 * x, 0.01 * y) == pytest.approx(reference, rel=1e-10)
    assert metrics.linear_cka(x @ q + 5.0, y) == pytest.approx(reference, rel=1e-10)  # and to translation
    # ... but not to an anisotropic scaling: the check above could not pass for a measure blind to everything
    stretch = torch.diag(torch.linspace(0.1, 10, 12, dtype=torch.float64))
    assert abs(metrics.linear_cka(x @ stretch, y) - reference) > 1e-3


def test_cka_rejects_mismatched_or_constant_inputs(xy):
    x, y = xy
    with pytest.raises(ValueError, match="same samples"):
        metrics.linear_cka(x, y[:-1])
    with pytest.raises(ValueError, match="constant"):
        metrics.linear_cka(x, torch.ones_like(y))


def test_spectrum_is_sorted_non_negative_and_is_the_covariance_eigenvalues():
    generator = torch.Generator().manual_seed(1)
    low_rank = torch.randn(60, 3, generator=generator, dtype=torch.float64)
    delta = low_rank @ torch.randn(3, 16, generator=generator, dtype=torch.float64)
    eigenvalues = metrics.covariance_spectrum(delta)
    assert eigenvalues.shape == (16,)
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:]) and torch.all(eigenvalues >= 0)
    expected = np.sort(np.linalg.eigvalsh(np.cov(delta.numpy(), rowvar=False)))[::-1]
    np.testing.assert_allclose(eigenvalues.numpy(), np.clip(expected, 0, None), atol=1e-9)
    assert (eigenvalues > 1e-8 * eigenvalues[0]).sum() == 3  # a rank-3 bias has three directions


def test_spectrum_normalisations():
    delta = torch.randn(50, 8, dtype=torch.float64)
    share = metrics.covariance_spectrum(delta, "trace")
    assert share.sum() == pytest.approx(1.0)
    scaled = metrics.covariance_spectrum(delta * 1000, "scale")
    np.testing.assert_allclose(scaled, metrics.covariance_spectrum(delta, "scale"), rtol=1e-9)
    with pytest.raises(ValueError, match="normalize"):
        metrics.covariance_spectrum(delta, "bogus")


def test_effective_rank():
    assert metrics.effective_rank(torch.ones(10)) == pytest.approx(10.0)
    assert metrics.effective_rank(torch.tensor([5.0, 0.0, 0.0])) == pytest.approx(1.0)


def test_pareto_front_keeps_the_points_nothing_beats():
    points = [(10, 50), (20, 40), (15, 45), (12, 30), (20, 20), (5, 60), (15, 45)]
    assert metrics.pareto_front(points) == [(5, 60), (10, 50), (15, 45), (20, 40)]


def test_log_bins_average_within_bins():
    lengths = torch.arange(1, 101)
    centres, means = metrics.log_bins(lengths, lengths.double() * 2, bins=5)
    assert means == pytest.approx([2 * c for c in centres])
    assert centres == sorted(centres) and centres[0] >= 1 and centres[-1] <= 100
