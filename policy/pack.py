"""The validators as Pulumi resource policies, all mandatory."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, PolicyConfigSchema, ResourceValidationArgs, ResourceValidationPolicy

try:  # run by the Pulumi CLI from this directory
    import validators
except ImportError:  # imported by the tests as a package
    from policy import validators

DESCRIPTIONS = {
    "stateful-resources-protected": "Claims, databases, buckets and the StorageClass carry `protect` where required (prod).",
    "storage-classes-retain": "StorageClasses use reclaimPolicy Retain.",
    "no-default-credentials": "No Secret or Helm value holds an upstream default password.",
    "no-plaintext-secrets": "Secrets never appear in ConfigMaps, container env literals or Helm values.",
    "images-pinned": "Every container image is pinned to a release tag or digest.",
}
PROTECTION_SCHEMA = PolicyConfigSchema(
    properties={"requireProtection": {"type": "boolean", "default": False}},
)


def _policy(name: str) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation) -> None:
        require = bool((args.get_config() or {}).get("requireProtection", False)) if name == "stateful-resources-protected" else False
        found = validators.violations(args.resource_type, args.props, bool(args.opts and args.opts.protect), require)
        for message in found[name]:
            report_violation(message, args.urn)

    return ResourceValidationPolicy(
        name=name,
        description=DESCRIPTIONS[name],
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PROTECTION_SCHEMA if name == "stateful-resources-protected" else None,
    )


def policies() -> list[ResourceValidationPolicy]:
    return [_policy(name) for name in DESCRIPTIONS]
