import copy

import pytest
import torch
from torch import nn

from siblings.attacks.batch import attack_set, build, run_batched, target_classes
from siblings.attacks import ATTACKS, BlackBox, Budget
from siblings.attacks.base import fooled
from siblings.gradients import margin
from siblings.models import create_model
from conftest import tiny_spec

QUERY_KNOBS = {"prgf": {"samples": 20, "step_size": 0.01}, "rgf": {"samples": 20, "step_size": 0.01},
               "square": {}}
ALL = ["pgd", "mifgsm", "prgf", "rgf", "square"]


def make(name, **kw):
    return ATTACKS.get(name)(**{**QUERY_KNOBS.get(name, {}), **kw})


def budget(name, eps, norm="linf", queries=300):
    return Budget(eps, norm, queries if ATTACKS.get(name).is_query else None)


@pytest.fixture(scope="module")
def images(trained, blobs):
    return attack_set(trained, blobs[0], blobs[1], 40, seed=0)


class Counting(nn.Module):
    """Wraps a model and counts the images it is asked to score: not the all-zero rows that
    pad a pass to its fixed chunk (no test image is all zero)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.images, self.rows = model, 0, []

    def forward(self, x):
        self.images += int((x.flatten(1).abs().amax(1) > 0).sum())
        self.rows.append(len(x))
        return self.model(x)


@pytest.mark.parametrize("name", ALL)
def test_eps_zero_changes_nothing(trained, images, name):
    x, y = images
    result = make(name)(trained, trained, x, y, budget(name, 0.0))
    assert torch.equal(result.x_adv, x)
    assert not result.success.any()


@pytest.mark.parametrize("name,norm,eps", [(n, "linf", 0.05) for n in ALL]
                         + [(n, "l2", 1.0) for n in ["pgd", "mifgsm", "prgf", "rgf"]])
def test_adversarial_inputs_stay_in_ball_and_pixel_range(trained, images, name, norm, eps):
    x, y = images
    result = make(name)(trained, trained, x, y, budget(name, eps, norm))
    delta = (result.x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1


def test_random_start_stays_in_ball(trained, images):
    x, y = images
    x_adv = make("pgd", random_start=True).perturb(trained, x, y, Budget(0.05))
    assert (x_adv - x).abs().max() <= 0.05 + 1e-6


def test_an_attack_hands_the_models_back_in_the_mode_they_came_in(trained, images):
    """PGD crafts on batch norm's running statistics, whatever mode its caller left the
    source in, and leaves a model that was training still training."""
    source = copy.deepcopy(trained).train()
    x, y = images
    result = make("pgd")(source, trained, x, y, Budget(0.05))
    assert source.training and not trained.training
    with torch.no_grad():
        assert torch.equal(result.source_success, fooled(trained.eval()(result.x_adv), y, False))


# The most queries one iteration may cost with QUERY_KNOBS and no retry: a sigma check (2),
# the norm probes (10), one difference along the prior, the samples, the new point.
WORST_ITERATION = {"prgf": 2 + 10 + 1 + 20 + 1, "rgf": 2 + 20 + 1, "square": 1}


@pytest.mark.parametrize("name", ["prgf", "rgf", "square"])
def test_query_attacks_never_exceed_the_budget_and_count_every_call(trained, images, name):
    x, y = images
    target = Counting(trained)
    attack = make(name)
    result = attack(trained, target, x, y, Budget(0.03, "linf", 150))
    assert result.queries.max() <= 150
    assert result.queries.sum().item() == target.images
    # a failure stops only when another iteration could overrun the budget
    assert (result.queries[~result.success] > 150 - WORST_ITERATION[name]).all()


def test_black_box_refuses_a_query_past_the_budget(trained, images):
    box = BlackBox(trained, 2, budget=1)
    box(images[0][:2], torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="budget exceeded"):
        box(images[0][:1], torch.tensor([1]))


def whitebox_early_stop(attack, model, x, y, budget, steps, step_size):
    """White-box PGD through the attack's own hooks, freezing each image once it is fooled,
    as a query attack does."""
    x_adv, done = x.clone(), torch.zeros(len(y), dtype=torch.bool)
    for _ in range(steps):
        grad = attack.gradient(model, x_adv, y)
        moved = attack.project(attack.update(x_adv, grad, step_size, budget.norm, {}), x, budget)
        x_adv = torch.where(done.view(-1, 1, 1, 1), x_adv, moved)
        with torch.no_grad():
            done |= model(x_adv).argmax(1) != y
    return done


def test_prgf_with_the_target_as_prior_follows_it_and_matches_whitebox_pgd(trained, images):
    """With a perfect prior P-RGF is white-box PGD on its margin objective, paid in queries."""
    from siblings.attacks.transfer import PGD

    class MarginPGD(PGD):  # the same objective as P-RGF, through the objective hook
        def objective(self, logits, y):
            return -margin(logits, y, self.targeted)

    x, y = images
    steps, eps, step = 20, 0.1, 0.01
    prgf = make("prgf", samples=50, step_size=step, max_iterations=steps)
    result = prgf(trained, trained, x, y, Budget(eps, "linf", steps * (10 + 1 + 50 + 1) + 1))
    lambdas = torch.tensor(result.trace["lambda"])
    assert (lambdas == 1).float().mean() > 0.8
    whitebox = whitebox_early_stop(MarginPGD(), trained, x, y, Budget(eps), steps, step)
    assert 0.2 < whitebox.float().mean() < 1  # a setting that can tell them apart
    assert abs(result.success.float().mean() - whitebox.float().mean()) <= 0.05
    # stepping along the prior costs no sampling: 1 + 1 new point per iteration, plus 10
    # norm probes at iterations 0, 3, 10, ...
    assert result.queries[result.success].float().median() < steps * 2 + 30 + 1


def test_rgf_estimate_points_along_the_true_gradient(trained, images):
    x, y = images[0][:20], images[1][:20]
    rgf = make("rgf", samples=50)
    box = BlackBox(trained, len(y), 10_000)
    run = rgf._new_run(x, y, x, rgf._streams(None, len(y)))
    with torch.no_grad():
        run.loss = margin(trained(x), y, False)
    estimate, live = rgf._sampled(box, run, torch.arange(len(y)), None, torch.zeros(len(y)))
    assert live.all()
    xg = x.clone().requires_grad_(True)
    true = torch.autograd.grad(-margin(trained(xg), y, False).sum(), xg)[0]
    cosine = nn.functional.cosine_similarity(estimate.flatten(1), true.flatten(1))
    assert cosine.mean() > 0.15  # random directions alone: about sqrt(50/784) = 0.25 expected
    assert (cosine > 0).float().mean() >= 0.9


def test_pgd_agrees_with_torchattacks(trained, images):
    import torchattacks  # a test-only dependency (pyproject: test extra)
    x, y = images
    ours = make("pgd", steps=10, step_size_factor=2.5)(trained, trained, x, y, Budget(0.03))
    reference = torchattacks.PGD(trained.eval(), eps=0.03, alpha=2.5 * 0.03 / 10, steps=10,
                                 random_start=False)(x, y)
    with torch.no_grad():
        theirs = (trained(reference).argmax(1) != y).float().mean()
    assert abs(ours.success.float().mean() - theirs) <= 0.02


def test_targeted_attack_reaches_the_chosen_class(trained, images):
    x, y = images
    goal = target_classes(y, 10, seed=0)
    assert (goal != y).all()
    result = make("pgd", targeted=True, steps=20)(trained, trained, x, goal, Budget(0.3))
    assert (trained(result.x_adv).argmax(1) == goal).float().mean() > 0.8
    assert torch.equal(result.success, trained(result.x_adv).argmax(1) == goal)


def test_whitebox_success_grows_with_eps(trained, blobs):
    x, y = attack_set(trained, blobs[0], blobs[1], 100, seed=0)
    rates = [make("pgd")(trained, trained, x, y, Budget(eps)).success.float().mean()
             for eps in (0.01, 0.1, 0.3)]
    assert rates[0] <= rates[1] <= rates[2]
    assert rates[2] > 0.9


def test_prior_weight_matches_the_papers_closed_form():
    """Theorem 1 of Cheng et al. (2019), written out independently: the closed form where it
    lies in (0, 1), else 0 below the threshold alpha^2 (d + 2q - 2) < 1 and 1 above it."""
    from siblings.attacks.query import prior_weight

    def paper(alpha: float, d: int, q: int) -> float:
        a2 = alpha * alpha
        best = (1 - a2) * (1 - a2 * (d + 2 * q - 2)) / (a2 * a2 * d * (d + 2 * q - 2)
                                                        - 2 * a2 * d * q + 1)
        return best if 0 < best < 1 else (0.0 if a2 * (d + 2 * q - 2) < 1 else 1.0)

    for d, q in ((784, 50), (3072, 50), (150528, 10)):
        alphas = torch.cat([torch.zeros(1, dtype=torch.float64),
                            torch.logspace(-4, -0.001, 4000, dtype=torch.float64)])
        expected = torch.tensor([paper(float(a), d, q) for a in alphas], dtype=torch.float64)
        interior = (expected > 0) & (expected < 1)
        assert interior.sum() > 100  # the grid exercises 0 < lambda < 1
        assert torch.allclose(prior_weight(alphas, d, q), expected, rtol=1e-9, atol=1e-12)
        assert prior_weight(torch.tensor([1.0, -1.0]), d, q).tolist() == [1.0, 1.0]


class Linear(nn.Module):
    """A linear 10-class model on 1x8x8 images: its finite differences never vanish at
    sigma 1e-4, so no sigma retry muddles a query count."""

    def __init__(self, seed: int):
        super().__init__()
        self.fc = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 64, generator=torch.Generator().manual_seed(seed)))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("prior", ["target", "unrelated", "none"])
def test_prgf_spends_the_reference_queries_per_iteration(prior):
    """Per iteration: 1 difference along the prior + (samples if lambda < 1) + 1 new point,
    + 10 norm probes at iterations 0, 3, 10; RGF: samples + 1. (Before the reference's
    schedule, every P-RGF iteration paid the 10 probes.)"""
    target = Linear(0)
    source = {"target": target, "unrelated": Linear(1), "none": None}[prior]
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.25
    y = target(x).argmax(1)
    iterations, samples = 12, 50
    attack = make("rgf" if source is None else "prgf", samples=samples, step_size=1e-5,
                  max_iterations=iterations)
    result = attack(source, target, x, y, Budget(0.05, "linf", 10_000))
    assert not result.success.any()
    if source is None:
        assert result.queries.item() == 1 + iterations * (samples + 1)
        return
    lambdas = result.trace["lambda"]
    assert len(lambdas) == iterations
    # both branches: the target's own gradient is mostly followed as is (lambda 1; the
    # 10-probe norm estimate is noisy), an unrelated model's is mixed with samples
    assert (sum(lam == 1 for lam in lambdas) >= iterations // 2 if prior == "target"
            else max(lambdas) < 1)
    norm_iterations = sum(i % 10 == 0 or i == 3 for i in range(iterations))
    expected = 1 + sum(1 + (samples if lam < 1 else 0) + 1 for lam in lambdas) + 10 * norm_iterations
    assert result.queries.item() == expected


def test_square_never_sends_a_proposal_that_changes_nothing(trained, images):
    """The reference redraws a square whose corners the image already holds; sending it
    would cost a query and teach nothing."""

    class Recording(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.sent = model, []

        def forward(self, x):
            self.sent.append(x[:1].clone())  # one image per run (the black box sends it twice)
            return self.model(x)

    x, y = images
    no_ops = sent = 0
    for i in range(6):
        target = Recording(trained)
        make("square")(None, target, x[i:i + 1], y[i:i + 1], Budget(0.05, "linf", 200))
        with torch.no_grad():
            best = target.sent[0]
            best_margin = margin(trained(best), y[i:i + 1], False)
            for proposal in target.sent[1:]:
                sent += 1
                no_ops += int(torch.equal(proposal, best))
                m = margin(trained(proposal), y[i:i + 1], False)
                if m < best_margin:
                    best, best_margin = proposal, m
    assert sent > 100
    assert no_ops == 0


def test_square_side_follows_the_reference_schedule():
    square = make("square")
    assert square._side(0, 1000, 28, 28) == 6         # round(sqrt(0.05 * 784))
    assert square._side(1, 1000, 28, 28) == 6         # i = 10: not yet halved
    assert square._side(2, 1000, 28, 28) == 4         # i = 20: p / 2
    assert square._side(999, 1000, 28, 28) == 1       # p / 512 rounds below 1
    assert make("square", p_init=1.0)._side(0, 1000, 28, 28) == 27  # below the image side


def test_attack_set_holds_only_correctly_classified_images(trained, blobs):
    x, y = attack_set(trained, blobs[0], blobs[1], 50, seed=1)
    assert len(y) == 50
    assert (trained(x).argmax(1) == y).all()


@pytest.mark.parametrize("kwargs,match", [
    ({"eps": 0.1, "queries": 0}, "positive integer"),
    ({"eps": 0.1, "queries": -5}, "positive integer"),
    ({"eps": -0.1}, "eps must be"),
    ({"eps": 1.5}, "eps must be"),
    ({"eps": 0.1, "norm": "l3"}, "unknown norm"),
])
def test_bad_budgets_are_clear_errors(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        Budget(**kwargs)


def test_square_refuses_l2(trained, images):
    with pytest.raises(ValueError, match="linf"):
        make("square")(None, trained, *images, Budget(1.0, "l2", 100))


def test_long_query_attacks_say_how_far_they_are(trained, images, monkeypatch, caplog):
    monkeypatch.setattr("siblings.attacks.query.PROGRESS_SECONDS", 0.0)
    x, y = images
    with caplog.at_level("INFO", logger="siblings"):
        make("rgf")(None, trained, x[:4], y[:4], budget("rgf", 0.05, queries=60))
    assert any("RGF iteration" in r.message and "images fooled" in r.message
               for r in caplog.records)
