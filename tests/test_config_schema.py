"""The editor schema says what the config models say."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml

from components.config import PROJECT
from tools.config_schema import COMMAND, SCHEMA, render, stack_file_schema
from tools.render import ROOT


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def stack_document(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())


def test_the_checked_in_schema_is_what_the_models_generate():
    assert SCHEMA.read_text() == render(stack_file_schema()), f"{SCHEMA.relative_to(ROOT)} is stale: run `{COMMAND}`"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_validate_and_point_editors_at_the_schema(validator, stack):
    text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./schema/stack-config.json"
    assert [error.message for error in validator.iter_errors(yaml.safe_load(text))] == []


def test_secrets_are_accepted_only_encrypted(validator):
    document = stack_document("prod")
    document["config"][f"{PROJECT}:vaultToken"] = {"secure": "v1:AAAA"}
    assert validator.is_valid(document)
    document["config"][f"{PROJECT}:vaultToken"] = "s.plaintext-root-token"
    assert not validator.is_valid(document)


def test_other_packages_settings_are_allowed_but_not_unknown_project_keys(validator):
    document = stack_document("dev")
    document["config"]["kubernetes:context"] = "kind-mlops"
    assert validator.is_valid(document)
    document["config"][f"{PROJECT}:mlfow"] = {}
    assert not validator.is_valid(document)
