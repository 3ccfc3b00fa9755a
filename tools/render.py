"""Run the real program under Pulumi mocks and capture everything it registers.

    python -m tools.render --stack dev --out rendered/dev
    python -m tools.render --stack dev --out rendered/dev --charts     # and every Helm release, rendered by Helm
    python -m tools.render --stack dev --snapshot before-dev.json      # before a refactor
    python -m tools.render --stack dev --compare before-dev.json       # after it: same URNs, inputs, options?

writes every Kubernetes object the stack would apply to YAML (Secret values redacted), for review, diffs and
scanners; a snapshot records every registered resource (URN, inputs, options) so a refactor can prove it changes
nothing a `pulumi up` would touch. Tests use `render_stack()` directly. Config comes from Pulumi.yaml (declared defaults and values)
and the real Pulumi.<stack>.yaml, exactly as the CLI would hand it to the program.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import runpy
import string
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
REDACTED = "<redacted>"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_SIG_KEY = "4dabf18193072939515e22adb298388d"


@dataclass
class Registered:
    """One resource the program registered: its type, logical name, inputs and resource options."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    parent: str
    provider: str
    protect: bool
    retain_on_delete: bool
    dependencies: list[str] = field(default_factory=list)
    aliases: list[Any] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    @property
    def is_kubernetes_object(self) -> bool:
        return self.type.startswith("kubernetes:") and not self.type.startswith("kubernetes:helm")

    @property
    def metadata(self) -> dict[str, Any]:
        return self.inputs.get("metadata") or {}

    def manifest(self, redact: bool = True) -> dict[str, Any]:
        """The Kubernetes object as `kubectl apply` would see it."""
        group_version, kind = self.type.split(":", 1)[1].rsplit(":", 1)
        group, version = group_version.split("/")
        api_version = version if group == "core" else f"{group}/{version}"
        body = {"apiVersion": api_version, "kind": kind, **_integral(unwrap_secrets(self.inputs))}
        if kind == "Secret" and redact:
            for key in ("data", "stringData"):
                if key in body:
                    body[key] = {k: REDACTED for k in body[key]}
        return body


@dataclass
class Rendering:
    """Everything one stack registers, with lookups that read like the spec."""

    stack: str
    resources: list[Registered]
    outputs: dict[str, Any]
    config: dict[str, str]

    def find_all(self, kind: str | None = None, name: str | None = None, type: str | None = None) -> list[Registered]:
        return [
            r
            for r in self.resources
            if (kind is None or r.kind == kind)
            and (type is None or r.type == type)
            and (name is None or r.name == name or r.metadata.get("name") == name)
        ]

    def find(self, kind: str | None = None, name: str | None = None, type: str | None = None) -> Registered:
        found = self.find_all(kind, name, type)
        if len(found) != 1:
            raise LookupError(f"expected one {kind or type} named {name!r}, found {[r.name for r in found]}")
        return found[0]

    def kubernetes_objects(self) -> list[Registered]:
        return [r for r in self.resources if r.is_kubernetes_object]

    def by_urn(self, urn: str) -> Registered | None:
        return next((r for r in self.resources if r.urn == urn), None)


def _integral(value: Any) -> Any:
    """Mocks hand numbers back as floats (2.0); Kubernetes wants integers where they are whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def is_secret(value: Any) -> bool:
    """Whether the program handed this input over as a Pulumi secret (encrypted in state, masked in diffs)."""
    return isinstance(value, Mapping) and value.get(_SIG_KEY) == _SECRET_SIG


def unwrap_secrets(value: Any) -> Any:
    """Replace Pulumi's secret envelopes by their plain values (the mocks see secrets wrapped)."""
    if isinstance(value, Mapping):
        if is_secret(value):
            return unwrap_secrets(value.get("value"))
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def mock_password(name: str, length: int, special: bool) -> str:
    """A deterministic stand-in for a generated password; with `special` it carries the characters that break
    careless URI or shell quoting."""
    alphabet = string.ascii_letters + string.digits
    digest = hashlib.sha256(name.encode()).digest()
    core = "".join(alphabet[b % len(alphabet)] for b in digest * 4)[: max(length - 6, 4)]
    return core + ("@:/%#?" if special else digest.hex()[:6])


def mock_bytes(name: str, length: int) -> bytes:
    """A deterministic stand-in for pulumi_random's RandomBytes (a Fernet key, say)."""
    return (hashlib.sha256(name.encode()).digest() * (length // 32 + 1))[:length]


def _mock_outputs(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    state = dict(inputs)
    if type_ in ("random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString"):
        special = bool(inputs.get("special", True))
        value = mock_password(name, int(inputs.get("length", 16)), special)
        state["result"] = value.lower() if inputs.get("upper") is False else value
    elif type_ == "random:index/randomBytes:RandomBytes":
        raw = mock_bytes(name, int(inputs.get("length", 32)))
        state.update(base64=base64.b64encode(raw).decode(), hex=raw.hex())
    elif type_ == "aws:s3/bucket:Bucket":
        state["arn"] = f"arn:aws:s3:::{inputs['bucket']}"
    elif type_ == "aws:kms/key:Key":
        # KMS assigns a UUID key id; with none, the Vault seal stanza would render kms_key_id = "None".
        key_id = str(uuid.UUID(bytes=hashlib.sha256(name.encode()).digest()[:16], version=4))
        state.update(keyId=key_id, arn=f"arn:aws:kms:mock-region:000000000000:key/{key_id}")
    elif type_ == "aws:iam/accessKey:AccessKey":
        state["secret"] = mock_password(name, 40, special=True)
    elif type_.startswith("kubernetes:") and "metadata" in inputs:
        # Pulumi auto-names objects without metadata.name by appending a random suffix.
        metadata = dict(unwrap_secrets(inputs["metadata"]))
        metadata.setdefault("name", f"{name}-mock1234")
        state["metadata"] = metadata
    return state


def stack_settings(
    stack: str, root: Path = ROOT, overrides: Mapping[str, Any] | None = None, mock_secrets: bool = True
) -> dict[str, str]:
    """Config as the CLI hands it to the program: `project:key` -> string (JSON for non-strings).

    With `mock_secrets`, secret settings the stack file lacks (they live encrypted in a real stack, or are set with
    `pulumi config set --secret`) get placeholder values: under mocks nothing reaches Vault or a cloud. Pass False
    to see the program's own error for a missing secret."""
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())
    name = project["name"]
    values: dict[str, Any] = {}
    for key, declaration in (project.get("config") or {}).items():
        full = key if ":" in key else f"{name}:{key}"
        if isinstance(declaration, Mapping) and ("default" in declaration or "value" in declaration):
            values[full] = declaration.get("value", declaration.get("default"))
        elif not isinstance(declaration, Mapping):
            values[full] = declaration
    stack_file = root / f"Pulumi.{stack}.yaml"
    values.update((yaml.safe_load(stack_file.read_text()) or {}).get("config") or {})
    if mock_secrets:
        from components.config import SECRET_KEYS

        for key in SECRET_KEYS:
            values.setdefault(f"{name}:{key}", f"mock-{key}")
    values.update(overrides or {})
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def render_stack(
    stack: str, overrides: Mapping[str, Any] | None = None, root: Path = ROOT, mock_secrets: bool = True
) -> Rendering:
    """Evaluate `__main__.py` for `stack` under mocks; raises what the program raises (e.g. ConfigError).
    Missing secret settings get placeholders unless `mock_secrets` is False (see stack_settings)."""
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())["name"]
    config = stack_settings(stack, root, overrides, mock_secrets)

    def program() -> None:
        sys.path.insert(0, str(root))
        try:
            runpy.run_path(str(root / "__main__.py"), run_name="__main__")
        finally:
            sys.path.remove(str(root))

    return render_program(program, project=project, stack=stack, config=config)


def render_program(
    program: Callable[[], None], project: str = "mlops-platform", stack: str = "unit", config: Mapping[str, str] | None = None
) -> Rendering:
    """Run any Pulumi program (a function declaring resources) under mocks and capture what it registers."""
    import pulumi
    from pulumi.runtime import config as runtime_config
    from pulumi.runtime import mocks, rpc, settings
    from pulumi.runtime.stack import wait_for_rpcs

    registered: list[Registered] = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            return f"{args.name}-id", _mock_outputs(args.typ, args.name, args.inputs)

        def call(self, args: pulumi.runtime.MockCallArgs):
            return {}, None

    class RecordingMonitor(mocks.MockMonitor):
        def RegisterResource(self, request):
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                registered.append(
                    Registered(
                        type=request.type,
                        name=request.name,
                        urn=response.urn,
                        inputs=rpc.deserialize_properties(request.object),
                        parent=request.parent,
                        provider=request.provider,
                        protect=bool(request.protect),
                        retain_on_delete=bool(request.retainOnDelete),
                        dependencies=list(request.dependencies),
                        aliases=[str(a) for a in request.aliases] + list(request.aliasURNs),
                    )
                )
            return response

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    settings.reset_options(project=project, stack=stack)
    runtime_config.set_all_config(dict(config or {}), [])
    mocks.set_mocks(Mocks(), project=project, stack=stack, preview=False, monitor=RecordingMonitor(Mocks()))
    try:
        try:
            program()
        finally:
            # Drain what was registered before any error, so no RPC is left dangling on a closed loop.
            loop.run_until_complete(wait_for_rpcs())
        root_resource = settings.get_root_resource()
        outputs = loop.run_until_complete(_resolve(root_resource.outputs if root_resource else {}))
    finally:
        loop.close()
    return Rendering(stack=stack, resources=registered, outputs=outputs, config=dict(config or {}))


async def _resolve(outputs: Mapping[str, Any]) -> dict[str, Any]:
    import pulumi

    resolved = {}
    for key, value in outputs.items():
        resolved[key] = await pulumi.Output.from_input(value).future()
    return resolved


def manifests(rendering: Rendering, redact: bool = True) -> Iterator[tuple[Registered, dict[str, Any]]]:
    for resource in rendering.kubernetes_objects():
        yield resource, resource.manifest(redact)


def write_manifests(rendering: Rendering, out: Path) -> list[Path]:
    """One YAML file per Kubernetes object (`<kind>-<namespace>-<name>.yaml`) and per Helm release
    (`helm-<name>.yaml`: chart, version, repository, namespace, values). Keys are sorted so renders diff cleanly."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for resource, manifest in manifests(rendering):
        meta = manifest.get("metadata") or {}
        stem = "-".join(p for p in (manifest["kind"].lower(), meta.get("namespace"), meta.get("name") or resource.name) if p)
        written.append(_dump(out / f"{stem}.yaml", manifest))
    for release in rendering.resources:
        if release.type.startswith("kubernetes:helm.sh/"):
            inputs = _integral(unwrap_secrets(release.inputs))
            summary = {k: inputs.get(k) for k in ("chart", "version", "repositoryOpts", "namespace", "values")}
            written.append(_dump(out / f"helm-{release.name}.yaml", summary))
    return written


def _dump(path: Path, document: Any) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=True))
    return path


def snapshot(rendering: Rendering) -> dict[str, dict[str, Any]]:
    """URN -> what Pulumi would diff for that resource: inputs (secrets unwrapped) and resource options.
    Dependencies are kept as URNs, sorted: their order is an accident of evaluation."""
    return {
        r.urn: {
            "inputs": _integral(unwrap_secrets(r.inputs)),
            "parent": r.parent,
            "provider": r.provider.rsplit("::", 1)[0],
            "protect": r.protect,
            "retain_on_delete": r.retain_on_delete,
            "dependencies": sorted(set(r.dependencies)),
            "aliases": sorted(r.aliases),
        }
        for r in rendering.resources
    }


def compare_snapshots(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Every difference a refactor introduced: resources gone, resources new, and per resource each changed field."""
    problems = [f"gone: {urn}" for urn in sorted(set(before) - set(after))]
    problems += [f"new: {urn}" for urn in sorted(set(after) - set(before))]
    for urn in sorted(set(before) & set(after)):
        for key in sorted(set(before[urn]) | set(after[urn])):
            if before[urn].get(key) != after[urn].get(key):
                problems.append(f"changed {key}: {urn}\n  before: {before[urn].get(key)!r}\n  after:  {after[urn].get(key)!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack name; reads Pulumi.<stack>.yaml")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, help="directory for the YAML files")
    action.add_argument("--snapshot", type=Path, help="write every registered resource (URN, inputs, options) as JSON")
    action.add_argument("--compare", type=Path, help="compare the stack with a snapshot; exit 1 on any difference")
    parser.add_argument("--charts", action="store_true", help="with --out: also every Helm release, rendered by Helm")
    options = parser.parse_args(argv)
    rendering = render_stack(options.stack)
    if options.snapshot:
        options.snapshot.write_text(json.dumps(snapshot(rendering), indent=1, sort_keys=True, default=str))
        print(f"{options.stack}: {len(rendering.resources)} resources -> {options.snapshot}")
        return 0
    if options.compare:
        problems = compare_snapshots(json.loads(options.compare.read_text()), json.loads(json.dumps(snapshot(rendering), default=str)))
        print("\n".join(problems) or f"{options.stack}: {len(rendering.resources)} resources, identical to {options.compare}")
        return 1 if problems else 0
    written = write_manifests(rendering, options.out)
    print(f"{options.stack}: {len(rendering.resources)} resources, {len(written)} files -> {options.out}")
    if options.charts:
        from tools.charts import render_stack_charts, summary, write_objects

        charts = render_stack_charts(rendering)
        print(summary(charts))
        print(f"{len(write_objects(charts, options.out))} rendered chart objects -> {options.out}")
        return 1 if charts.missing or charts.failed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
