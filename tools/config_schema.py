"""JSON Schema of a whole Pulumi.<stack>.yaml, generated from the config models, for editors that complete and check
stack files (the YAML language server reads the `# yaml-language-server: $schema=...` line at their top).

    python -m tools.config_schema            # write schema/stack-config.json
    python -m tools.config_schema --check    # exit 1 when the checked-in schema differs from the models
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from components.config import PROJECT, SECRET_KEYS, StackSettings
from components.config.base import Block

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema" / "stack-config.json"
COMMAND = "python -m tools.config_schema"

SECURE = {
    "type": "object",
    "description": "An encrypted value, written by `pulumi config set --secret`.",
    "properties": {"secure": {"type": "string"}},
    "required": ["secure"],
    "additionalProperties": False,
}
OTHER_NAMESPACES = rf"^(?!{PROJECT}:)[A-Za-z0-9_.-]+:"
"""Settings of other packages (`kubernetes:context`, `aws:region`, ...): any value, checked by their providers."""


class _ForEditors(GenerateJsonSchema):
    """What editors show on hover: each key's description and, for a value, its default."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # a title would only repeat the key ("Kubecontext")

    def default_schema(self, schema: Any) -> Any:
        # A block's default is the defaults of its keys, each shown on that key already.
        if isinstance(schema.get("default"), Block):
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def stack_file_schema() -> dict[str, Any]:
    """The schema of Pulumi.<stack>.yaml: Pulumi's stack keys, and under `config:` every `mlops-platform:` setting."""
    settings = StackSettings.model_json_schema(by_alias=True, schema_generator=_ForEditors)
    definitions = {**settings.pop("$defs"), "secure": SECURE}
    keys = {f"{PROJECT}:{key}": schema for key, schema in settings["properties"].items()}
    keys |= {
        f"{PROJECT}:{key}": {"$ref": "#/$defs/secure", "description": f"Secret: {meaning}."}
        for key, meaning in SECRET_KEYS.items()
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Pulumi.<stack>.yaml of {PROJECT}",
        "description": f"Generated from components/config by `{COMMAND}`; do not edit.",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": dict(sorted(keys.items())),
                "patternProperties": {OTHER_NAMESPACES: {}},
                "additionalProperties": False,
            },
            "secretsprovider": {"type": "string", "description": "Secrets provider of the stack (passphrase, awskms://...)."},
            "encryptedkey": {"type": "string", "description": "Data key of the secrets provider, encrypted."},
            "encryptionsalt": {"type": "string", "description": "Salt of the passphrase secrets provider."},
            "environment": {"description": "Pulumi ESC environments the stack imports."},
        },
        "additionalProperties": False,
        "$defs": dict(sorted(definitions.items())),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"fail if {SCHEMA.relative_to(ROOT)} is stale")
    options = parser.parse_args(argv)
    text = render(stack_file_schema())
    if options.check:
        if not SCHEMA.exists() or SCHEMA.read_text() != text:
            print(f"{SCHEMA.relative_to(ROOT)} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{SCHEMA.relative_to(ROOT)} is up to date")
        return 0
    SCHEMA.parent.mkdir(exist_ok=True)
    SCHEMA.write_text(text)
    print(f"wrote {SCHEMA.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
