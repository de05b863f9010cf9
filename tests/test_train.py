import torch

from siblings.models import create_model
from siblings.train import fit

from conftest import tiny_spec


def trained_weights(blobs, seed):
    torch.manual_seed(seed)
    model = create_model(tiny_spec())
    fit(model, blobs[0][:200], blobs[1][:200], epochs=1, batch_size=50, lr=0.01,
        weight_decay=0.0, seed=seed)
    return model.state_dict()


def test_same_seed_same_model_other_seed_other_model(blobs):
    a, b, c = (trained_weights(blobs, s) for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fit_learns(trained, blobs):
    x, y = blobs
    assert (trained(x).argmax(1) == y).float().mean() > 0.9
