"""kappa = (1 - rho^2)(1 - 1/n) as the knob: the public functions and config.kappa."""
import math

import pytest

import hermite_vae
from hermite_vae import config_lib, ou
from configs import smoke


@pytest.mark.parametrize("n", [2, 3, 5, 20])
@pytest.mark.parametrize("k", [0.0, 0.05, 0.152, 0.3])
def test_rho_for_kappa_inverts_kappa(k, n):
  if k >= 1 - 1 / n:
    pytest.skip("out of reach")
  rho = hermite_vae.rho_for_kappa(k, n)
  assert 0.0 <= rho <= 1.0
  assert hermite_vae.kappa(rho, n) == pytest.approx(k, abs=1e-12)


def test_known_values():
  assert hermite_vae.kappa(0.9, 5) == pytest.approx(0.19 * 0.8)
  assert hermite_vae.kappa(0.9, 1) == 0.0 and hermite_vae.kappa(1.0, 7) == 0.0
  assert hermite_vae.rho_for_kappa(0.152, 5) == pytest.approx(0.9)
  assert hermite_vae.rho_for_kappa(0.408, 5) == pytest.approx(0.7)


@pytest.mark.parametrize("k,n,smallest", [(0.5, 2, 3), (0.6, 2, 3), (0.7, 3, 4), (0.1, 1, 2)])
def test_unreachable_kappa_names_the_smallest_n(k, n, smallest):
  with pytest.raises(ValueError, match=f"smallest n that reaches it is {smallest}$"):
    hermite_vae.rho_for_kappa(k, n)
  hermite_vae.rho_for_kappa(k, smallest)  # and that n does reach it
  with pytest.raises(ValueError):
    hermite_vae.rho_for_kappa(k, smallest - 1)


@pytest.mark.parametrize("bad", [-0.1, 1.0, math.nan, "x"])
def test_bad_kappa(bad):
  with pytest.raises(ValueError, match="kappa"):
    ou.rho_for_kappa(bad, 5)


def _hvae(**kw):
  return smoke.with_overrides(method="hvae", **kw)


def test_config_kappa_sets_rho_and_refuses_inconsistent_settings():
  c = _hvae(kappa=0.152, num_ou_samples=2)
  with pytest.raises(ValueError, match="config.kappa=0.152: disagrees with rho=0.9"):
    config_lib.validate(c)  # not yet resolved: rho is the preset's
  config_lib.apply_kappa(c)
  assert c.rho == pytest.approx(ou.rho_for_kappa(0.152, 2))
  config_lib.validate(c)
  assert '"kappa": 0.152' in c.to_json_best_effort()  # what config.json records
  explicit = _hvae(kappa=0.152, num_ou_samples=5, rho=0.9)
  config_lib.apply_kappa(explicit, rho_given=True)  # consistent: accepted
  with pytest.raises(ValueError, match="config.rho=0.7: set together with kappa=0.152"):
    config_lib.apply_kappa(_hvae(kappa=0.152, rho=0.7), rho_given=True)
  with pytest.raises(ValueError, match="config.kappa=0.6.*smallest n that reaches it is 3"):
    config_lib.apply_kappa(_hvae(kappa=0.6, num_ou_samples=2))
  with pytest.raises(ValueError, match="config.kappa=0.2: is the discount of method=hvae"):
    config_lib.validate(smoke.with_overrides(method="vae", kappa=0.2))
  assert config_lib.apply_kappa(_hvae()).rho == 0.9  # unset: rho as given
