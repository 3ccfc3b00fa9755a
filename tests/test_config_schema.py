"""The editor schema and the README's config reference say what the config models say, and nothing else."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from components.config import PROJECT, ConfigError, parse_stack_config
from tools.config_schema import COMMAND, SCHEMA, render, stack_file_schema
from tools.render import ROOT

README = (ROOT / "README.md").read_text()
EXAMPLE_LINE = re.compile(rf"^  - {PROJECT}:(?P<key>\S+) = (?P<rest>.*)$")


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


def readme_example() -> tuple[str, list[tuple[str, Any]]]:
    """The README's example message, and the (key, value) pairs it names."""
    (block,) = re.findall(r"```\n(invalid configuration in Pulumi\.dev\.yaml.*?)```", README, re.S)
    settings = []
    for line in block.splitlines()[1:]:
        match = EXAMPLE_LINE.match(line)
        value, _ = json.JSONDecoder().raw_decode(match["rest"])
        settings.append((match["key"], value))
    return block.rstrip("\n"), settings


def with_setting(document: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """`document` with `key` (as messages name it: `objectStore.buckets[2]`) set to `value`."""
    changed = copy.deepcopy(document)
    top, *path = re.findall(r"[^.\[\]]+|\[\d+\]", key)
    parent, last = changed["config"], f"{PROJECT}:{top}"
    for part in path:
        parent = parent[last]
        last = int(part[1:-1]) if part.startswith("[") else part
    parent[last] = value
    return changed


def test_the_readme_example_is_what_the_program_says_and_the_schema_rejects_each_value(validator):
    message, settings = readme_example()
    dev = stack_document("dev")
    for key, value in settings:
        assert not validator.is_valid(with_setting(dev, key, value)), f"the schema accepts {key} = {value!r}"
    broken = dev
    for key, value in settings:
        broken = with_setting(broken, key, value)
    raw = {key.split(":", 1)[1]: value for key, value in broken["config"].items()}
    with pytest.raises(ConfigError) as caught:
        parse_stack_config("dev", raw)
    assert str(caught.value) == message


def readme_reference_keys() -> set[str]:
    """Keys of the README's config table; `.x` after a key is its sibling (`vault.deploy`, `.phase`)."""
    table = README.split("| key (`mlops-platform:`) |", 1)[1].split("\n\n", 1)[0]
    keys = set()
    for row in table.splitlines()[2:]:
        first, *others = re.findall(r"`([^`]+)`", row.split("|")[1])
        parent = first.rsplit(".", 1)[0] + "." if "." in first else ""
        keys |= {first} | {parent + other[1:] if other.startswith(".") else other for other in others}
    return keys


def schema_keys(schema: dict[str, Any], definitions: dict[str, Any], prefix: str = "") -> set[str]:
    """Every key users can set, down to values: resources and secrets are values, not blocks."""
    keys = set()
    for name, prop in schema["properties"].items():
        ref = next((option["$ref"] for option in [prop, *prop.get("anyOf", [])] if "$ref" in option), "")
        block = definitions.get(ref.rsplit("/", 1)[-1], {})
        if "properties" in block and not ref.endswith(("/ResourceSpec", "/secure")):
            keys |= schema_keys(block, definitions, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_the_readme_documents_every_setting_and_only_settings():
    schema = stack_file_schema()
    settings = {key.removeprefix(f"{PROJECT}:") for key in schema_keys(schema["properties"]["config"], schema["$defs"])}
    documented = readme_reference_keys()
    assert documented - settings == set(), "the README documents keys the models lack"
    assert settings - documented == set(), "settings missing from the README's config table"


def test_editors_accept_migrate_from_only_with_engine_postgres(validator):
    dev = stack_document("dev")
    mlflow = dev["config"][f"{PROJECT}:mlflow"]
    assert not validator.is_valid(with_setting(dev, "mlflow", {**mlflow, "migrateFrom": "sqlite"}))
    moving = {**mlflow, "engine": "postgres", "replicas": 2, "migrateFrom": "sqlite"}
    assert validator.is_valid(with_setting(dev, "mlflow", moving))
    assert not validator.is_valid(with_setting(dev, "mlflow", {**moving, "migrateFrom": "mysql"}))
    parse_stack_config("dev", {key.split(":", 1)[1]: value for key, value in with_setting(dev, "mlflow", moving)["config"].items()})
