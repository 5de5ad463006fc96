"""capture.one_pass: which layers rule capture_layers captures in one pass (the missing stores, when at least two),
and the config checks (known models, one layer set)."""

from __future__ import annotations

import copy

import pytest

from secret_moe.errors import ConfigError
from secret_moe.layout import path
from secret_moe.plan import check_one_pass, one_pass_layers


@pytest.fixture
def config(workflow_config):
    config = copy.deepcopy(workflow_config)
    config["models"]["tiny"]["layers"] = [2, 0, 1]
    config["models"]["other"] = {**config["models"]["tiny"], "layers": [0, 1, 2]}
    config["capture"]["one_pass"] = ["tiny"]
    return config


def existing(*stores: tuple[str, int, str]):
    made = {path("activations", model=m, layer=layer, split=s) for m, layer, s in stores}
    return lambda store: store in made


def test_every_layer_of_a_fresh_model_goes_into_the_pass(config):
    assert one_pass_layers(config, existing()) == [0, 1, 2]
    config["capture"]["one_pass"] = []
    assert one_pass_layers(config, existing()) == []


def test_a_store_that_exists_keeps_its_layer_out_of_the_pass(config):
    # one split is enough: the pass makes both splits' stores of the same layers
    assert one_pass_layers(config, existing(("tiny", 1, "validation"))) == [0, 2]
    assert one_pass_layers(config, existing(("other", 0, "train"))) == [0, 1, 2]  # not a one_pass model
    # one missing layer is no pass to share: capture_activations makes it
    assert one_pass_layers(config, existing(("tiny", 0, "train"), ("tiny", 1, "train"))) == []


def test_the_models_of_one_pass_share_one_layer_set(config):
    config["capture"]["one_pass"] = ["tiny", "other"]
    check_one_pass(config)
    assert one_pass_layers(config, existing(("other", 2, "train"))) == [0, 1]
    config["models"]["other"]["layers"] = [0, 1]
    with pytest.raises(ConfigError, match="must list the same layers"):
        check_one_pass(config)


def test_an_unknown_model_is_refused(config):
    config["capture"]["one_pass"] = ["tiny", "nope"]
    with pytest.raises(ConfigError, match="'nope' is not a key of models"):
        check_one_pass(config)
