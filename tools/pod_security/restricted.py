"""The restricted level's controls (each with its revisions): hardening beyond baseline. Some replace a baseline
control at this level, checking the same fields more strictly (`overrides`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tools.pod_security.baseline import _seccomp_baseline
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
    _is_windows,
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
    # The types baseline forbids first, in its words; then restricted's own rule: no container is left without a profile.
    forbidden = _seccomp_baseline(meta, spec)
    if forbidden:
        return forbidden
    pod, _, unset, _ = _seccomp_types(spec)
    if pod is not True and unset:
        detail = f'pod or {_containers_phrase(unset)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'
        return "seccompProfile", detail
    return None


CHECKS: tuple[Check, ...] = (
    Check(
        "allowPrivilegeEscalation",
        "restricted",
        (Revision((1, 8), _privilege_escalation), Revision((1, 25), _not_on_windows(_privilege_escalation))),
    ),
    Check(
        "capabilities_restricted",
        "restricted",
        (
            Revision((1, 22), _capabilities_restricted, overrides=("capabilities_baseline",)),
            Revision((1, 25), _not_on_windows(_capabilities_restricted), overrides=("capabilities_baseline",)),
        ),
    ),
    Check(
        "restrictedVolumes", "restricted", (Revision((1, 0), _restricted_volumes, overrides=("hostPathVolumes",)),)
    ),
    Check("runAsNonRoot", "restricted", (Revision((1, 0), _run_as_non_root),)),
    Check("runAsUser", "restricted", (Revision((1, 23), _run_as_user),)),
    Check(
        "seccompProfile_restricted",
        "restricted",
        (
            Revision((1, 19), _seccomp_restricted, overrides=("seccompProfile_baseline",)),
            Revision((1, 25), _not_on_windows(_seccomp_restricted), overrides=("seccompProfile_baseline",)),
        ),
    ),
)
"""Every restricted control a 1.33 API server knows, with every revision of it."""
