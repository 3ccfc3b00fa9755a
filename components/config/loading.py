"""Reading a stack's settings: from the strings the Pulumi CLI hands the program to a validated StackConfig."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi
from pydantic import ValidationError

from components.config.errors import describe
from components.config.stack import PROJECT, SCALAR_KEYS, SECRET_KEYS, StackConfig, StackSettings


def parse_stack_config(stack: str, raw: Mapping[str, Any], secret_keys: frozenset[str] = frozenset()) -> StackConfig:
    """Build the typed configuration from decoded project settings (keys without the `mlops-platform:` prefix).

    `secret_keys` names the settings stored as secrets, whose values no message may show.
    Raises one ConfigError listing every problem found.
    """
    # Secret values never enter the models: only which of them are set matters to the rules.
    settings = {key: value for key, value in raw.items() if key not in SECRET_KEYS}
    present = frozenset(key for key in SECRET_KEYS if raw.get(key))
    try:
        validated = StackSettings.model_validate(settings, context={"secrets": present})
    except ValidationError as error:
        hidden = frozenset(secret_keys) | frozenset(SECRET_KEYS)
        raise describe(error, stack, PROJECT, StackSettings, hidden, tuple(SECRET_KEYS)) from None
    return StackConfig.of(stack, validated)


def decode_settings(values: Mapping[str, str]) -> dict[str, Any]:
    """Decode the strings Pulumi hands the program: structured blocks are JSON, scalars are typed per Pulumi.yaml."""
    decoded: dict[str, Any] = {}
    for key, text in values.items():
        kind = SCALAR_KEYS.get(key)
        if kind is str:
            decoded[key] = text
        elif kind is bool:
            decoded[key] = {"true": True, "false": False}.get(text, text)
        else:
            try:
                decoded[key] = json.loads(text)
            except (TypeError, ValueError):
                decoded[key] = text
    return decoded


def load_stack_config() -> StackConfig:
    """Read every `mlops-platform:*` setting of the running stack and validate it."""
    from pulumi.runtime import config as runtime_config

    prefix = f"{PROJECT}:"
    every = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values = {key[len(prefix):]: value for key, value in every.items() if key.startswith(prefix)}
    secret = {key[len(prefix):] for key in every if key.startswith(prefix) and runtime_config.is_config_secret(key)}
    return parse_stack_config(pulumi.get_stack(), decode_settings(values), frozenset(secret))
