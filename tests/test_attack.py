import pytest
import torch

from siblings.attack import ATTACKS, attack_set, success_rates


def pgd(**kw):
    return ATTACKS.get("pgd")(**{"steps": 10, **kw})


def test_eps_zero_changes_nothing(trained, blobs):
    x, y = blobs[0][:20], blobs[1][:20]
    assert torch.equal(pgd().perturb(trained, x, y, 0.0), x)


@pytest.mark.parametrize("random_start", [False, True])
def test_adversarial_inputs_stay_in_ball_and_pixel_range(trained, blobs, random_start):
    x, y = blobs[0][:40], blobs[1][:40]
    eps = 0.05
    g = torch.Generator().manual_seed(0)
    x_adv = pgd(random_start=random_start).perturb(trained, x, y, eps, g)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_whitebox_success_grows_with_eps(trained, blobs):
    x, y = attack_set(trained, blobs[0], blobs[1], 100, seed=0)
    rates = [success_rates(pgd(), trained, trained, x, y, eps, 50, 0)["success_rate"]
             for eps in (0.01, 0.1, 0.3)]
    assert rates[0] <= rates[1] <= rates[2]
    assert rates[2] > 0.9


def test_attack_set_holds_only_correctly_classified_images(trained, blobs):
    x, y = attack_set(trained, blobs[0], blobs[1], 50, seed=1)
    assert len(y) == 50
    assert (trained(x).argmax(1) == y).all()
