import pytest

from siblings.cards import ModelCard, ModelSpec, Parent

SPEC = ModelSpec("resnet18", 1, 10, 32, (0.5,), (0.5,), width=0.25)


def test_a_card_round_trips_through_its_dict():
    card = ModelCard(kind="defended", spec=SPEC, seed=0, n_correct=400, n_test=500,
                     parameters=1000, seconds=1.5, code_version="abc", device="cpu",
                     parent=Parent("sib.safetensors", 405, "def"), compression_id="ptq-w8a8",
                     compression={"method": "ptq"}, defense_id="unpair-l3", failed=False,
                     measured={"similarity_before": 0.9})
    assert ModelCard.from_dict(card.to_dict()) == card


def test_a_card_refuses_a_dict_that_does_not_fit():
    full = ModelCard(kind="full", spec=SPEC, seed=0, n_correct=400, n_test=500,
                     parameters=1000, seconds=1.5, code_version="abc", device="cpu").to_dict()
    del full["seconds"]
    with pytest.raises(ValueError, match=r"missing \['seconds'\], unknown \['train_seconds'\]"):
        ModelCard.from_dict({**full, "train_seconds": 1.5})
    with pytest.raises(ValueError, match="kind 'teacher' is none of"):
        ModelCard.from_dict({**full, "seconds": 1.0, "kind": "teacher"})
