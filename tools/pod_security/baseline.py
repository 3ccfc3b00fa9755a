"""The baseline level's controls (each with its revisions): what stops known privilege escalations."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tools.pod_security.checks import (
    Check,
    Meta,
    Result,
    Revision,
    Spec,
    _bad_containers,
    _containers,
    _containers_phrase,
    _context,
    _go_quote,
    _name,
    _obj,
    _plural,
    _pod_context,
    _quoted,
    _seccomp_types,
    _set,
    _setters,
    _volumes,
)

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


CHECKS: tuple[Check, ...] = (
    Check("appArmorProfile", "baseline", (Revision((1, 0), _app_armor),)),
    Check("capabilities_baseline", "baseline", (Revision((1, 0), _capabilities_baseline),)),
    Check("hostNamespaces", "baseline", (Revision((1, 0), _host_namespaces),)),
    Check("hostPathVolumes", "baseline", (Revision((1, 0), _host_path_volumes),)),
    Check("hostPorts", "baseline", (Revision((1, 0), _host_ports),)),
    Check("privileged", "baseline", (Revision((1, 0), _privileged),)),
    Check("procMount", "baseline", (Revision((1, 0), _proc_mount),)),
    Check(
        "seLinuxOptions",
        "baseline",
        (Revision((1, 0), _se_linux(_SELINUX_TYPES_1_0)), Revision((1, 31), _se_linux(_SELINUX_TYPES_1_31))),
    ),
    Check(
        "seccompProfile_baseline",
        "baseline",
        (Revision((1, 0), _seccomp_annotations), Revision((1, 19), _seccomp_baseline)),
    ),
    Check(
        "sysctls",
        "baseline",
        tuple(
            Revision(since, _sysctls(names))
            for since, names in (
                ((1, 0), _SYSCTLS_1_0),
                ((1, 27), _SYSCTLS_1_27),
                ((1, 29), _SYSCTLS_1_29),
                ((1, 32), _SYSCTLS_1_32),
            )
        ),
    ),
    Check("windowsHostProcess", "baseline", (Revision((1, 0), _host_process),)),
)
"""Every baseline control a 1.33 API server knows, with every revision of it."""
