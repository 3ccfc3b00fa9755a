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

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

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


# --- reading a pod spec the way the Go types see it ---------------------------------------------------------------

Spec = Mapping[str, Any]
Meta = Mapping[str, Any]
Result = tuple[str, str] | None
"""A check's outcome: None when allowed, else (reason, detail) in upstream's words."""


def _obj(value: Any) -> Mapping[str, Any]:
    """A nested object, with null/absent read as empty (Go reads fields of a nil pointer as unset)."""
    return value if isinstance(value, Mapping) else {}


def _set(parent: Mapping[str, Any], key: str) -> bool:
    """Whether a pointer field is set: present and not null. `{}` is set."""
    return parent.get(key) is not None


def _containers(spec: Spec) -> list[Mapping[str, Any]]:
    # Every check visits init, regular and ephemeral containers, in this order (upstream visitContainers).
    return [_obj(c) for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or ()]


def _name(item: Mapping[str, Any]) -> str:
    return item.get("name") or ""


def _context(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return _obj(container.get("securityContext"))


def _pod_context(spec: Spec) -> Mapping[str, Any]:
    return _obj(spec.get("securityContext"))


def _is_windows(spec: Spec) -> bool:
    return _obj(spec.get("os")).get("name") == "windows"


# --- upstream's message helpers --------------------------------------------------------------------------------------


def _plural(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _quoted(items: list[str]) -> str:
    # Upstream's joinQuote: wraps without escaping, so quoted annotation values come out doubly quoted.
    return '"' + '", "'.join(items) + '"' if items else ""


def _go_quote(value: str) -> str:
    # Go's %q; JSON agrees with it for printable text, which annotation values are in practice.
    return json.dumps(value, ensure_ascii=False)


def _containers_phrase(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_quoted(names)}"


def _setters(pod: bool, containers: list[str]) -> list[str]:
    """Who set a forbidden value: "pod" and/or 'containers "a", "b"'."""
    return (["pod"] if pod else []) + ([_containers_phrase(containers)] if containers else [])


def _bad_containers(spec: Spec, is_bad: Callable[[Mapping[str, Any]], bool]) -> list[str]:
    return [_name(c) for c in _containers(spec) if is_bad(_context(c))]


# --- baseline controls -----------------------------------------------------------------------------------------------


def _host_process(meta: Meta, spec: Spec) -> Result:
    def sets_host_process(context: Mapping[str, Any]) -> bool:
        return _obj(context.get("windowsOptions")).get("hostProcess") is True

    setters = _setters(sets_host_process(_pod_context(spec)), _bad_containers(spec, sets_host_process))
    if setters:
        return "hostProcess", f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true"
    return None


def _host_namespaces(meta: Meta, spec: Spec) -> Result:
    shared = [f"{field}=true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field) is True]
    return ("host namespaces", ", ".join(shared)) if shared else None


def _privileged(meta: Meta, spec: Spec) -> Result:
    bad = _bad_containers(spec, lambda context: context.get("privileged") is True)
    if bad:
        return "privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true"
    return None


# The container runtime's default set: adding one of these grants nothing a container does not already have.
_BASELINE_CAPABILITIES = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
     "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)  # fmt: skip


def _capabilities_baseline(meta: Meta, spec: Spec) -> Result:
    bad, added = [], set()
    for container in _containers(spec):
        extra = [
            cap
            for cap in _obj(_context(container).get("capabilities")).get("add") or ()
            if cap not in _BASELINE_CAPABILITIES
        ]
        if extra:
            bad.append(_name(container))
            added.update(extra)
    if bad:
        detail = (
            f"{_containers_phrase(bad)} must not include {_quoted(sorted(added))} in securityContext.capabilities.add"
        )
        return "non-default capabilities", detail
    return None


def _volumes(spec: Spec) -> list[Mapping[str, Any]]:
    return [_obj(v) for v in spec.get("volumes") or ()]


def _host_path_volumes(meta: Meta, spec: Spec) -> Result:
    names = [_name(v) for v in _volumes(spec) if _set(v, "hostPath")]
    return ("hostPath volumes", f"{_plural('volume', 'volumes', len(names))} {_quoted(names)}") if names else None


def _host_ports(meta: Meta, spec: Spec) -> Result:
    bad, ports = [], set()
    for container in _containers(spec):
        used = {str(int(p["hostPort"])) for p in map(_obj, container.get("ports") or ()) if p.get("hostPort")}
        if used:
            bad.append(_name(container))
            ports |= used
    if bad:
        # Upstream sorts the ports as strings: "10250" before "8080".
        detail = (
            f"{_containers_phrase(bad)} {_plural('uses', 'use', len(bad))} "
            f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}"
        )
        return "hostPort", detail
    return None


_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _app_armor(meta: Meta, spec: Spec) -> Result:
    bad_types: set[str] = set()

    def forbidden(context: Mapping[str, Any]) -> bool:
        if not _set(context, "appArmorProfile"):
            return False
        kind = _obj(context["appArmorProfile"]).get("type", "")
        if kind in ("RuntimeDefault", "Localhost"):
            return False
        bad_types.add(kind)
        return True

    setters = _setters(forbidden(_pod_context(spec)), _bad_containers(spec, forbidden))
    # The deprecated annotations count on every version: the API server still copies them into the field on Pods.
    annotations = sorted(
        f"{key}={_go_quote(value)}"
        for key, value in _obj(meta.get("annotations")).items()
        if key.startswith(_APPARMOR_ANNOTATION)
        and not (value in ("", "runtime/default") or value.startswith("localhost/"))
    )
    if annotations:
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if setters:
        values = sorted(bad_types) + annotations
        reason = _plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(values))
        return reason, f"{' and '.join(setters)} must not set AppArmor profile type to {_quoted(values)}"
    return None


def _se_linux(allowed_types: frozenset[str]) -> Callable[[Meta, Spec], Result]:
    def check(meta: Meta, spec: Spec) -> Result:
        bad_types: set[str] = set()
        user = role = False

        def forbidden(context: Mapping[str, Any]) -> bool:
            nonlocal user, role
            if not _set(context, "seLinuxOptions"):
                return False
            options = _obj(context["seLinuxOptions"])
            kind = options.get("type") or ""
            bad_type, sets_user, sets_role = (
                kind not in allowed_types,
                bool(options.get("user")),
                bool(options.get("role")),
            )
            if bad_type:
                bad_types.add(kind)
            user, role = user or sets_user, role or sets_role
            return bad_type or sets_user or sets_role

        setters = _setters(forbidden(_pod_context(spec)), _bad_containers(spec, forbidden))
        if not setters:
            return None
        problems = [f"{_plural('type', 'types', len(bad_types))} {_quoted(sorted(bad_types))}"] if bad_types else []
        if user:
            problems.append("user may not be set")
        if role:
            problems.append("role may not be set")
        return (
            "seLinuxOptions",
            f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(problems)}",
        )

    return check


_SELINUX_TYPES_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_SELINUX_TYPES_1_31 = _SELINUX_TYPES_1_0 | {"container_engine_t"}


def _proc_mount(meta: Meta, spec: Spec) -> Result:
    # `Unmasked` lifts the runtime's masks on /proc; on 1.33 a user namespace (`hostUsers: false`) relaxes this only
    # behind the alpha UserNamespacesPodSecurityStandards gate, so not here.
    types: set[str] = set()

    def unmasked(context: Mapping[str, Any]) -> bool:
        if _set(context, "procMount") and context["procMount"] != "Default":
            types.add(context["procMount"])
            return True
        return False

    bad = _bad_containers(spec, unmasked)
    if bad:
        return (
            "procMount",
            f"{_containers_phrase(bad)} must not set securityContext.procMount to {_quoted(sorted(types))}",
        )
    return None


_SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"


def _seccomp_annotations(meta: Meta, spec: Spec) -> Result:
    # Before v1.19 seccomp was set by annotations; unlike AppArmor's, an empty value is forbidden here.
    annotations = _obj(meta.get("annotations"))
    keys = [_SECCOMP_POD_ANNOTATION] + [_SECCOMP_CONTAINER_ANNOTATION + _name(c) for c in _containers(spec)]
    forbidden = sorted(
        {
            f"{key}={_go_quote(annotations[key])}"
            for key in keys
            if key in annotations
            and not (
                annotations[key] in ("runtime/default", "docker/default") or annotations[key].startswith("localhost/")
            )
        }
    )
    if forbidden:
        return (
            "seccompProfile",
            f"forbidden {_plural('annotation', 'annotations', len(forbidden))} {', '.join(forbidden)}",
        )
    return None


def _seccomp_types(spec: Spec) -> tuple[bool | None, list[str], list[str], set[str]]:
    """The pod's seccomp (None unset, True allowed, False forbidden), containers setting a forbidden type, containers
    leaving it unset, and the forbidden types."""
    bad_types: set[str] = set()

    def allowed(context: Mapping[str, Any]) -> bool | None:
        if not _set(context, "seccompProfile"):
            return None
        kind = _obj(context["seccompProfile"]).get("type", "")
        if kind in ("RuntimeDefault", "Localhost"):
            return True
        bad_types.add(kind)
        return False

    pod = allowed(_pod_context(spec))
    verdicts = [(_name(c), allowed(_context(c))) for c in _containers(spec)]
    explicit = [name for name, ok in verdicts if ok is False]
    unset = [name for name, ok in verdicts if ok is None]
    return pod, explicit, unset, bad_types


def _seccomp_baseline(meta: Meta, spec: Spec) -> Result:
    pod, explicit, _, bad_types = _seccomp_types(spec)
    setters = _setters(pod is False, explicit)
    if setters:
        return (
            "seccompProfile",
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to {_quoted(sorted(bad_types))}",
        )
    return None


def _sysctls(allowed: frozenset[str]) -> Callable[[Meta, Spec], Result]:
    def check(meta: Meta, spec: Spec) -> Result:
        # Listed in spec order, repeats kept, as upstream does.
        names = [_name(s) for s in map(_obj, _pod_context(spec).get("sysctls") or ()) if _name(s) not in allowed]
        return ("forbidden sysctls", ", ".join(names)) if names else None

    return check


# Namespaced sysctls that cannot reach beyond the pod; each Kubernetes release that vetted more added a revision.
_SYSCTLS_1_0 = frozenset(
    {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
     "net.ipv4.ip_unprivileged_port_start"}
)  # fmt: skip
_SYSCTLS_1_27 = _SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
_SYSCTLS_1_29 = _SYSCTLS_1_27 | {
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
_SYSCTLS_1_32 = _SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}


# --- restricted controls ---------------------------------------------------------------------------------------------


def _not_on_windows(check: Callable[[Meta, Spec], Result]) -> Callable[[Meta, Spec], Result]:
    # From v1.25 a pod with spec.os.name=windows skips controls whose fields Windows pods may not set at all
    # (API validation rejects them there), so the pod passes without setting them.
    def windows_exempt(meta: Meta, spec: Spec) -> Result:
        return None if _is_windows(spec) else check(meta, spec)

    return windows_exempt


def _privilege_escalation(meta: Meta, spec: Spec) -> Result:
    # Unset fails like true: the kernel lets a process gain privileges (setuid binaries) unless told not to.
    bad = _bad_containers(spec, lambda context: context.get("allowPrivilegeEscalation") is not False)
    if bad:
        return (
            "allowPrivilegeEscalation != false",
            f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false",
        )
    return None


def _capabilities_restricted(meta: Meta, spec: Spec) -> Result:
    missing_drop, adding, added = [], [], set()
    for container in _containers(spec):
        name, capabilities = _name(container), _obj(_context(container).get("capabilities"))
        if "ALL" not in (capabilities.get("drop") or ()):
            missing_drop.append(name)
        extra = [cap for cap in capabilities.get("add") or () if cap != "NET_BIND_SERVICE"]
        if extra:
            adding.append(name)
            added.update(extra)
    details = []
    if missing_drop:
        details.append(f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(
            f"{_containers_phrase(adding)} must not include {_quoted(sorted(added))} in securityContext.capabilities.add"
        )
    return ("unrestricted capabilities", "; ".join(details)) if details else None


# Sources that hold only what the pod's own API objects or its claims provide.
_ALLOWED_VOLUMES = (
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected", "secret",
)  # fmt: skip
# The node-level and legacy in-tree sources, in the order upstream names the first one a volume uses.
_RESTRICTED_VOLUMES = (
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd", "flexVolume",
    "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk",
    "portworxVolume", "scaleIO", "storageos",
)  # fmt: skip


def _restricted_volumes(meta: Meta, spec: Spec) -> Result:
    bad, types = [], set()
    for volume in _volumes(spec):
        restricted = [source for source in _RESTRICTED_VOLUMES if _set(volume, source)]
        # A volume naming no source at all is defaulted to emptyDir before admission sees it, so it passes.
        if restricted and not any(_set(volume, source) for source in _ALLOWED_VOLUMES):
            bad.append(_name(volume))
            types.add(restricted[0])
    if bad:
        detail = (
            f"{_plural('volume', 'volumes', len(bad))} {_quoted(bad)} {_plural('uses', 'use', len(bad))} "
            f"{_plural('restricted volume type', 'restricted volume types', len(types))} {_quoted(sorted(types))}"
        )
        return "restricted volume types", detail
    return None


def _run_as_non_root(meta: Meta, spec: Spec) -> Result:
    # A container is covered by its own runAsNonRoot=true, or, when it leaves the field unset, by the pod's.
    # An explicit false anywhere is reported first, on its own.
    pod = _pod_context(spec).get("runAsNonRoot")
    explicit = _bad_containers(spec, lambda context: _set(context, "runAsNonRoot") and not context["runAsNonRoot"])
    setters = _setters(pod is not None and not pod, explicit)
    if setters:
        return "runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false"
    if not pod:
        uncovered = _bad_containers(spec, lambda context: not _set(context, "runAsNonRoot"))
        if uncovered:
            return (
                "runAsNonRoot != true",
                f"pod or {_containers_phrase(uncovered)} must set securityContext.runAsNonRoot=true",
            )
    return None


def _run_as_user(meta: Meta, spec: Spec) -> Result:
    # Only an explicit 0 is caught; an image that runs as root by default is runAsNonRoot's business.
    def root(context: Mapping[str, Any]) -> bool:
        return _set(context, "runAsUser") and context["runAsUser"] == 0

    setters = _setters(root(_pod_context(spec)), _bad_containers(spec, root))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _seccomp_restricted(meta: Meta, spec: Spec) -> Result:
    pod, explicit, unset, bad_types = _seccomp_types(spec)
    setters = _setters(pod is False, explicit)
    if setters:
        return (
            "seccompProfile",
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to {_quoted(sorted(bad_types))}",
        )
    if pod is not True and unset:
        detail = f'pod or {_containers_phrase(unset)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'
        return "seccompProfile", detail
    return None


# --- the table -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Revision:
    since: tuple[int, int]
    """First policy version (major, minor) this revision applies to."""
    check: Callable[[Meta, Spec], Result]
    overrides: tuple[str, ...] = ()
    """Baseline checks this restricted revision replaces at the restricted level (it checks the same fields, stricter)."""


@dataclass(frozen=True)
class _Check:
    id: str
    """Upstream's check ID; the API server lists violations baseline first, then restricted, each sorted by it."""
    level: str
    revisions: tuple[_Revision, ...]
    """In increasing `since` order."""


CHECKS: tuple[_Check, ...] = (
    _Check("appArmorProfile", "baseline", (_Revision((1, 0), _app_armor),)),
    _Check("capabilities_baseline", "baseline", (_Revision((1, 0), _capabilities_baseline),)),
    _Check("hostNamespaces", "baseline", (_Revision((1, 0), _host_namespaces),)),
    _Check("hostPathVolumes", "baseline", (_Revision((1, 0), _host_path_volumes),)),
    _Check("hostPorts", "baseline", (_Revision((1, 0), _host_ports),)),
    _Check("privileged", "baseline", (_Revision((1, 0), _privileged),)),
    _Check("procMount", "baseline", (_Revision((1, 0), _proc_mount),)),
    _Check(
        "seLinuxOptions",
        "baseline",
        (_Revision((1, 0), _se_linux(_SELINUX_TYPES_1_0)), _Revision((1, 31), _se_linux(_SELINUX_TYPES_1_31))),
    ),
    _Check(
        "seccompProfile_baseline",
        "baseline",
        (_Revision((1, 0), _seccomp_annotations), _Revision((1, 19), _seccomp_baseline)),
    ),
    _Check(
        "sysctls",
        "baseline",
        tuple(
            _Revision(since, _sysctls(names))
            for since, names in (
                ((1, 0), _SYSCTLS_1_0),
                ((1, 27), _SYSCTLS_1_27),
                ((1, 29), _SYSCTLS_1_29),
                ((1, 32), _SYSCTLS_1_32),
            )
        ),
    ),
    _Check("windowsHostProcess", "baseline", (_Revision((1, 0), _host_process),)),
    _Check(
        "allowPrivilegeEscalation",
        "restricted",
        (_Revision((1, 8), _privilege_escalation), _Revision((1, 25), _not_on_windows(_privilege_escalation))),
    ),
    _Check(
        "capabilities_restricted",
        "restricted",
        (
            _Revision((1, 22), _capabilities_restricted, overrides=("capabilities_baseline",)),
            _Revision((1, 25), _not_on_windows(_capabilities_restricted), overrides=("capabilities_baseline",)),
        ),
    ),
    _Check(
        "restrictedVolumes", "restricted", (_Revision((1, 0), _restricted_volumes, overrides=("hostPathVolumes",)),)
    ),
    _Check("runAsNonRoot", "restricted", (_Revision((1, 0), _run_as_non_root),)),
    _Check("runAsUser", "restricted", (_Revision((1, 23), _run_as_user),)),
    _Check(
        "seccompProfile_restricted",
        "restricted",
        (
            _Revision((1, 19), _seccomp_restricted, overrides=("seccompProfile_baseline",)),
            _Revision((1, 25), _not_on_windows(_seccomp_restricted), overrides=("seccompProfile_baseline",)),
        ),
    ),
)
"""Every control a 1.33 API server knows, with every revision of it."""


def _parse_version(version: str) -> tuple[int, int]:
    if version == "latest":
        return _LATEST
    match = _VERSION.fullmatch(version)
    if not match:
        raise ValueError(f'Pod Security version {version!r}: must be "latest" or "v1.x"')
    return 1, int(match.group(1))


def _revisions(level: str, version: tuple[int, int]) -> list[tuple[_Check, _Revision]]:
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
