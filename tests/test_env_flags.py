"""One reading of yes-or-no settings: 1/0, true/false, yes/no, on/off in any case; anything else is refused by name."""

from __future__ import annotations

import pytest

from mmdemo.config import env_flag, parse_flag, settings_from_env

TRUE_WORDS = ["1", "true", "True", "TRUE", "yes", "Yes", "on", "ON", " on "]
FALSE_WORDS = ["0", "false", "False", "no", "NO", "off", "Off", " 0 "]
VALID = "use 1/0, true/false, yes/no or on/off"


@pytest.mark.parametrize("word", TRUE_WORDS)
def test_true_words(word):
    assert parse_flag(word) is True
    assert env_flag("MMDEMO_SOMETHING", environ={"MMDEMO_SOMETHING": word}) is True


@pytest.mark.parametrize("word", FALSE_WORDS)
def test_false_words(word):
    assert parse_flag(word) is False
    assert env_flag("MMDEMO_SOMETHING", default=True, environ={"MMDEMO_SOMETHING": word}) is False


@pytest.mark.parametrize("environ", [{}, {"MMDEMO_SOMETHING": ""}, {"MMDEMO_SOMETHING": "  "}])
def test_unset_or_blank_is_the_default(environ):
    assert env_flag("MMDEMO_SOMETHING", environ=environ) is False
    assert env_flag("MMDEMO_SOMETHING", default=True, environ=environ) is True


@pytest.mark.parametrize("word", ["t", "y", "2", "enabled", "nope", "true!"])
def test_anything_else_names_the_variable_and_the_valid_words(word):
    with pytest.raises(ValueError) as refused:
        env_flag("MMDEMO_SOMETHING", environ={"MMDEMO_SOMETHING": word})
    assert str(refused.value) == f"MMDEMO_SOMETHING={word!r} is not valid: {VALID}"


def test_settings_read_their_flags_with_it():
    assert settings_from_env({"MMDEMO_ALLOW_CUSTOM_MODELS": "Yes"}).allow_custom_models is True
    assert settings_from_env({"MMDEMO_ALLOW_CUSTOM_MODELS": "off"}).allow_custom_models is False
    with pytest.raises(ValueError, match=f"^MMDEMO_ALLOW_CUSTOM_MODELS='maybe' is not valid: {VALID}$"):
        settings_from_env({"MMDEMO_ALLOW_CUSTOM_MODELS": "maybe"})  # once silently off
