"""The Ray Serve backend's plain parts, without a cluster: multiplexed model ids, the Serve config file."""

from __future__ import annotations

import pytest

from mmdemo import registry
from mmdemo.errors import InputError
from mmdemo.serving.families import families, family_for, multiplexed_model_id, parse_model_id
from mmdemo.tasks.base import ModelSpec


@pytest.mark.parametrize("specs", [
    {"model": ModelSpec("openai/whisper-base")},
    {"model": ModelSpec("openai/whisper-base", "abc123")},
    {"text": ModelSpec("cardiffnlp/twitter-roberta-base-sentiment-latest"), "image": ModelSpec("openai/clip", "v2"),
     "speech": ModelSpec("openai/whisper-base")},
    {},
])
def test_a_multiplexed_model_id_names_the_models_by_role(specs):
    model_id = multiplexed_model_id(specs)
    assert parse_model_id(model_id) == specs
    assert multiplexed_model_id(dict(reversed(list(specs.items())))) == model_id  # one id per set, in any order


def test_single_checkpoints_are_their_own_id_and_odd_ids_are_refused():
    assert multiplexed_model_id({"model": ModelSpec("openai/whisper-base", "main")}) == "openai/whisper-base@main"
    with pytest.raises(InputError, match="repository id"):
        multiplexed_model_id({"model": ModelSpec("evil/x;text=y")})


def test_every_task_has_one_family_the_one_it_declares():
    every = families()
    for name in registry.names():
        (family,) = [f for f in every.values() if name in f.tasks]
        assert family is not None and family.name == (registry.get(name).serve_family or name)
        assert family_for(name) == family
    assert family_for("vqa") == family_for("captioning")  # tasks sharing models share a deployment
    assert len(every) < len(registry.names())
    with pytest.raises(KeyError, match="vision_language"):
        family_for("ocr")


def test_the_repository_serve_config_covers_every_family():
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
    from mmdemo.serving.config import load_config

    config = load_config()
    assert set(config.deployments) == set(families())
    for family in families():
        options = config.deployment_options(family)
        replica = config.replica_options(family)
        assert options["max_ongoing_requests"] > replica.max_batch_size or replica.max_batch_size == 1, family
    assert config.max_batch_size == 8
    two = config.with_options("whisper", num_replicas=2)
    assert two.deployment_options("whisper")["num_replicas"] == 2
    assert "autoscaling_config" not in two.deployment_options("whisper")


def test_a_bad_serve_config_says_what_is_wrong(tmp_path):
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
    from mmdemo.serving.config import DEFAULT_CONFIG, load_config

    text = DEFAULT_CONFIG.read_text()
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace("max_models_per_replica: 2", "max_model_per_replica: 2", 1))
    with pytest.raises(ValueError, match="Unknown user_config keys max_model_per_replica: valid are"):
        load_config(typo)
    missing = tmp_path / "missing.yaml"
    missing.write_text(text.replace("- name: whisper  # speech", "- name: speech", 1))
    with pytest.raises(ValueError, match="not a family"):
        load_config(missing)
    with pytest.raises(ValueError, match="Cannot read the Serve config"):
        load_config(tmp_path / "absent.yaml")


def test_a_family_missing_from_the_serve_config_gets_the_defaults():
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
    from mmdemo.serving.config import ReplicaOptions, load_config
    from mmdemo.testing.echo import EchoTask

    registry.register(EchoTask())
    try:
        config = load_config()
        assert families()["echo"].tasks == ("echo",)
        options = config.deployment_options("echo")
        assert options["name"] == "echo" and options["num_replicas"] == 1
        assert config.replica_options("echo") == ReplicaOptions()
        assert options["max_ongoing_requests"] > config.replica_options("echo").max_batch_size
    finally:
        registry.unregister("echo")
    assert "echo" not in families()
