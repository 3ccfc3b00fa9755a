"""Pod Security admission, offline: what a Kubernetes 1.33 API server's PodSecurity plugin decides for a pod.

Written from the Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/) and
the checks of k8s.io/pod-security-admission v0.33 (policy/check_*.go), which is what a 1.33 API server runs:

    for metadata, spec in pod_templates(manifest):
        violations = check_pod(spec, metadata, **namespace_levels(namespace))

`check_pod` returns one Violation per failing control, in the API server's order; joining their messages with
", " gives the text after `violates PodSecurity "<level>:<version>": ` in the server's denial.

How the server versions the rules: each control has revisions, each applying from a policy version on; a namespace
pinned to v1.N gets the newest revision of each control at or below v1.N. The table below is what a 1.33 server
knows, so `latest`, `v1.33` and any newer version all evaluate with the newest revisions here (those of v1.32:
sysctls is the newest). Controls published later are deliberately absent: the probe/lifecycle `host` check (v1.34),
restricted procMount and the `hostUsers: false` relaxation of runAsNonRoot/runAsUser (v1.35), more safe sysctls
(v1.37). On 1.33 that relaxation exists only behind the alpha UserNamespacesPodSecurityStandards gate, off by default.

Pods and templates are the JSON/YAML form of the Kubernetes API (camelCase keys, as `kubectl get -o yaml` prints).
A field that is absent or null is "unset"; an empty object (`emptyDir: {}`, `seccompProfile: {}`) is set, as in Go.
Enforce mode applies to Pods only: for workload kinds the server only warns and audits on the template, and
enforces on the Pods their controllers create from it.

The API server defaults and normalises an object before this plugin sees it. Where that changes a decision it is
modelled (a volume with no source becomes an emptyDir); where it only adds to a message it is not (a hostNetwork
Pod gets hostPorts, deprecated AppArmor annotations are copied into fields), and neither are feature-gated fields
the server would drop or validation would refuse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tools.pod_security import baseline, restricted
from tools.pod_security.checks import Check, Meta, Revision, Spec, _obj

LEVELS = ("privileged", "baseline", "restricted")

_LABEL_PREFIX = "pod-security.kubernetes.io/"
_LATEST = (1, 10**9)  # newer than every revision, as upstream treats `latest`
_VERSION = re.compile(r"v1\.([0-9]|[1-9][0-9]*)")  # used with fullmatch: `$` would let "v1.33\n" through


@dataclass(frozen=True)
class Violation:
    """One control a pod fails, as the API server words it."""

    control: str
    """The control (upstream check ID without its level suffix): "runAsNonRoot", "capabilities", "seccompProfile"."""
    level: str
    """The level that introduces the control: "baseline" or "restricted"."""
    message: str
    """Upstream's reason and detail: `allowPrivilegeEscalation != false (container "x" must set ...)`."""


CHECKS: tuple[Check, ...] = (*baseline.CHECKS, *restricted.CHECKS)
"""Every control a 1.33 API server knows, with every revision of it: baseline.py's, then restricted.py's."""


def _parse_version(version: str) -> tuple[int, int]:
    if version == "latest":
        return _LATEST
    match = _VERSION.fullmatch(version)
    if not match:
        raise ValueError(f'Pod Security version {version!r}: must be "latest" or "v1.x"')
    return 1, int(match.group(1))


def _revisions(level: str, version: tuple[int, int]) -> list[tuple[Check, Revision]]:
    """The revision of each check that applies at this level and version, in the API server's order."""
    applicable = []
    for check in CHECKS:
        if level == "baseline" and check.level != "baseline":
            continue
        current = [r for r in check.revisions if r.since <= version]
        if current:
            applicable.append((check, current[-1]))
    overridden = {checked for _, revision in applicable for checked in revision.overrides}
    ordered = sorted(applicable, key=lambda pair: (pair[0].level != "baseline", pair[0].id))
    return [(check, revision) for check, revision in ordered if check.id not in overridden]


def check_pod(pod_spec: Spec, pod_metadata: Meta | None, level: str, version: str = "v1.33") -> list[Violation]:
    """The controls a pod (or pod template) fails at `level` ("privileged" admits everything) and `version`
    ("latest" or "v1.N"), as a 1.33 API server evaluates them; [] means admitted."""
    if level not in LEVELS:
        raise ValueError(f"Pod Security level {level!r}: must be one of {', '.join(LEVELS)}")
    parsed = _parse_version(version)
    if level == "privileged":
        return []
    metadata = pod_metadata or {}
    violations = []
    for check, revision in _revisions(level, parsed):
        result = revision.check(metadata, pod_spec)
        if result is not None:
            reason, detail = result
            control = check.id.removesuffix("_baseline").removesuffix("_restricted")
            violations.append(Violation(control, check.level, f"{reason} ({detail})" if detail else reason))
    return violations


# --- manifests -------------------------------------------------------------------------------------------------------

# Where each kind the plugin inspects keeps its pod: keyed by (API group, kind), since a custom resource may reuse a kind.
_TEMPLATE_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "PodTemplate"): ("template",),
    ("", "ReplicationController"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}


def pod_templates(manifest: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(pod metadata, pod spec) of a Pod or of the pod template of a workload; nothing for other kinds."""
    group = (manifest.get("apiVersion") or "").rpartition("/")[0]
    kind = manifest.get("kind")
    if (group, kind) == ("", "Pod"):
        yield _obj(manifest.get("metadata")), _obj(manifest.get("spec"))
        return
    path = _TEMPLATE_PATHS.get((group, kind))
    if path is None:
        return
    template: Any = manifest
    for key in path:
        template = _obj(template).get(key)
    if template is not None:  # a ReplicationController's template is optional: nothing to check then
        yield _obj(_obj(template).get("metadata")), _obj(_obj(template).get("spec"))


def namespace_levels(namespace_manifest: Mapping[str, Any]) -> dict[str, str]:
    """{"level", "version"} a Namespace enforces, ready for `check_pod(spec, meta, **levels)`.

    Missing labels mean privileged and latest, the defaults of the API server's AdmissionConfiguration. An invalid
    value raises ValueError: the API server refuses to create a Namespace with one.
    """
    labels = _obj(_obj(namespace_manifest.get("metadata")).get("labels"))
    level = labels.get(_LABEL_PREFIX + "enforce", "privileged")
    version = labels.get(_LABEL_PREFIX + "enforce-version", "latest")
    if level not in LEVELS:
        raise ValueError(f"label {_LABEL_PREFIX}enforce={level!r}: must be one of {', '.join(LEVELS)}")
    _parse_version(version)
    return {"level": level, "version": version}
