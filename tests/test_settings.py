"""Limits from environment variables: default when unset or empty, 1e6 accepted, one sentence otherwise."""

import pytest

from easynet.errors import InputError
from easynet.settings import env_int


def test_env_int(monkeypatch):
    monkeypatch.delenv("EASYNET_TEST_LIMIT", raising=False)
    assert env_int("EASYNET_TEST_LIMIT", 7) == 7
    for value, expected in (("", 7), ("12", 12), ("1e6", 1_000_000), ("2.9", 2)):
        monkeypatch.setenv("EASYNET_TEST_LIMIT", value)
        assert env_int("EASYNET_TEST_LIMIT", 7) == expected
    monkeypatch.setenv("EASYNET_TEST_LIMIT", "lots")
    with pytest.raises(InputError) as err:
        env_int("EASYNET_TEST_LIMIT", 7, "a number of bytes")
    assert str(err.value) == "EASYNET_TEST_LIMIT must be a number of bytes, got 'lots'"
