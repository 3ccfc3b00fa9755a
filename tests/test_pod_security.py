"""Pod Security admission as a 1.33 API server decides it: every control fails where its level applies and passes
with an allowed value, versions pick the right revision, and manifests and namespaces are read as the server reads
them. Expected messages are the API server's own words (upstream's reason and detail)."""

from __future__ import annotations

import pytest

from tools.pod_security import LEVELS, Violation, check_pod, namespace_levels, pod_templates

POD_CONTEXT = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def container(name: str = "app", **security) -> dict:
    """A container that meets restricted; keyword arguments set fields of its securityContext (None removes one)."""
    defaults = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    context = {key: value for key, value in (defaults | security).items() if value is not None}
    return {"name": name, "image": "registry.example/app:1", "securityContext": context}


def pod(**spec) -> dict:
    """A pod spec that meets restricted (a test below says so); keyword arguments replace top-level spec fields."""
    return {"securityContext": dict(POD_CONTEXT), "containers": [container()]} | spec


def pod_with_context(**security) -> dict:
    """pod() with fields added to the pod-level securityContext."""
    return pod(securityContext=POD_CONTEXT | security)


def namespace(**labels) -> dict:
    """A Namespace with Pod Security labels: enforce_version="v1.30" is pod-security.kubernetes.io/enforce-version."""
    prefix = "pod-security.kubernetes.io/"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "ns", "labels": {prefix + key.replace("_", "-"): value for key, value in labels.items()}},
    }


def baseline(control: str, message: str) -> Violation:
    return Violation(control, "baseline", message)


def restricted(control: str, message: str) -> Violation:
    return Violation(control, "restricted", message)


def test_the_reference_pod_meets_restricted_and_a_bare_pod_does_not():
    assert check_pod(pod(), None, "restricted") == []
    assert check_pod({"containers": [{"name": "app", "image": "x"}]}, None, "restricted") != []


# --- baseline: each control fails at baseline (and so at restricted) and passes with an allowed value -------------

BASELINE_FAILURES = [
    pytest.param(
        pod_with_context(windowsOptions={"hostProcess": True}),
        None,
        baseline(
            "windowsHostProcess", "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"
        ),
        id="hostProcess-pod",
    ),
    pytest.param(
        pod(containers=[container(windowsOptions={"hostProcess": True})]),
        None,
        baseline(
            "windowsHostProcess",
            'hostProcess (container "app" must not set securityContext.windowsOptions.hostProcess=true)',
        ),
        id="hostProcess-container",
    ),
    pytest.param(
        pod(hostNetwork=True, hostPID=True, hostIPC=True),
        None,
        baseline("hostNamespaces", "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"),
        id="host-namespaces",
    ),
    pytest.param(
        pod(containers=[container(privileged=True)]),
        None,
        baseline("privileged", 'privileged (container "app" must not set securityContext.privileged=true)'),
        id="privileged",
    ),
    pytest.param(
        pod(
            containers=[
                container()
                | {"ports": [{"containerPort": 8080, "hostPort": 8080}, {"containerPort": 10250, "hostPort": 10250}]}
            ]
        ),
        None,
        # Upstream sorts the ports as strings.
        baseline("hostPorts", 'hostPort (container "app" uses hostPorts 10250, 8080)'),
        id="hostPorts",
    ),
    pytest.param(
        pod_with_context(appArmorProfile={"type": "Unconfined"}),
        None,
        baseline(
            "appArmorProfile", 'forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")'
        ),
        id="appArmor-pod-field",
    ),
    pytest.param(
        pod(containers=[container(appArmorProfile={"type": "Unconfined"})]),
        None,
        baseline(
            "appArmorProfile",
            'forbidden AppArmor profile (container "app" must not set AppArmor profile type to "Unconfined")',
        ),
        id="appArmor-container-field",
    ),
    pytest.param(
        pod(),
        {"annotations": {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}},
        baseline(
            "appArmorProfile",
            'forbidden AppArmor profile (annotation must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/app="unconfined"")',
        ),
        id="appArmor-annotation",
    ),
    pytest.param(
        pod(containers=[container(seLinuxOptions={"type": "spc_t", "user": "system_u"})]),
        None,
        baseline(
            "seLinuxOptions",
            'seLinuxOptions (container "app" set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set)',
        ),
        id="seLinux-type-and-user",
    ),
    pytest.param(
        pod_with_context(seLinuxOptions={"role": "system_r"}),
        None,
        baseline(
            "seLinuxOptions", "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: role may not be set)"
        ),
        id="seLinux-role",
    ),
    pytest.param(
        pod(containers=[container(procMount="Unmasked")]),
        None,
        baseline("procMount", 'procMount (container "app" must not set securityContext.procMount to "Unmasked")'),
        id="procMount",
    ),
    pytest.param(
        pod_with_context(
            sysctls=[{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.ip_forward", "value": "1"}]
        ),
        None,
        baseline("sysctls", "forbidden sysctls (kernel.msgmax, net.ipv4.ip_forward)"),
        id="sysctls",
    ),
]


@pytest.mark.parametrize(("spec", "metadata", "violation"), BASELINE_FAILURES)
def test_baseline_control_fails_at_baseline_and_restricted(spec, metadata, violation):
    assert check_pod(spec, metadata, "baseline") == [violation]
    assert check_pod(spec, metadata, "restricted") == [violation]
    assert check_pod(spec, metadata, "privileged") == []


BASELINE_ALLOWED_VALUES = [
    pytest.param(pod_with_context(windowsOptions={"hostProcess": False}), None, id="hostProcess-false"),
    pytest.param(pod(hostNetwork=False, hostPID=False, hostIPC=False), None, id="host-namespaces-false"),
    pytest.param(pod(containers=[container(privileged=False)]), None, id="privileged-false"),
    pytest.param(
        pod(containers=[container() | {"ports": [{"containerPort": 8080, "hostPort": 0}]}]), None, id="hostPort-0"
    ),
    pytest.param(
        pod_with_context(appArmorProfile={"type": "RuntimeDefault"}),
        {"annotations": {"container.apparmor.security.beta.kubernetes.io/app": "localhost/k8s-app"}},
        id="appArmor-runtime-default-and-localhost",
    ),
    pytest.param(
        pod(containers=[container(appArmorProfile={"type": "Localhost", "localhostProfile": "k8s-app"})]),
        {"annotations": {"container.apparmor.security.beta.kubernetes.io/app": "runtime/default"}},
        id="appArmor-localhost-field",
    ),
    pytest.param(
        pod_with_context(seLinuxOptions={"type": "container_init_t", "level": "s0:c123,c456"}),
        None,
        id="seLinux-allowed-type-and-level",
    ),
    pytest.param(pod(containers=[container(procMount="Default")]), None, id="procMount-Default"),
    pytest.param(
        pod_with_context(seccompProfile={"type": "Localhost", "localhostProfile": "profiles/app.json"}),
        None,
        id="seccomp-localhost",
    ),
    pytest.param(
        pod_with_context(
            sysctls=[
                {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"},
                {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"},
            ]
        ),
        None,
        id="sysctls-safe",
    ),
]


@pytest.mark.parametrize(("spec", "metadata"), BASELINE_ALLOWED_VALUES)
def test_allowed_values_of_baseline_controls_pass_every_level(spec, metadata):
    assert check_pod(spec, metadata, "baseline") == []
    assert check_pod(spec, metadata, "restricted") == []


def test_privileged_admits_even_the_worst_pod():
    worst = pod(
        hostNetwork=True, containers=[{"name": "root", "securityContext": {"privileged": True, "runAsUser": 0}}]
    )
    assert check_pod(worst, None, "baseline") != []
    assert check_pod(worst, None, "privileged") == []


# --- restricted: its own controls pass baseline and fail restricted ------------------------------------------------

RESTRICTED_FAILURES = [
    pytest.param(
        pod(volumes=[{"name": "shared", "nfs": {"server": "nfs.example", "path": "/export"}}]),
        restricted("restrictedVolumes", 'restricted volume types (volume "shared" uses restricted volume type "nfs")'),
        id="volume-nfs",
    ),
    pytest.param(
        pod(containers=[container(allowPrivilegeEscalation=None)]),
        restricted(
            "allowPrivilegeEscalation",
            'allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)',
        ),
        id="privilege-escalation-unset",
    ),
    pytest.param(
        pod(containers=[container(allowPrivilegeEscalation=True)]),
        restricted(
            "allowPrivilegeEscalation",
            'allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)',
        ),
        id="privilege-escalation-true",
    ),
    pytest.param(
        pod(securityContext={"seccompProfile": {"type": "RuntimeDefault"}}),
        restricted(
            "runAsNonRoot", 'runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true)'
        ),
        id="runAsNonRoot-unset",
    ),
    pytest.param(
        pod_with_context(runAsUser=0),
        restricted("runAsUser", "runAsUser=0 (pod must not set runAsUser=0)"),
        id="runAsUser-0-pod",
    ),
    pytest.param(
        pod(containers=[container(runAsUser=0)]),
        restricted("runAsUser", 'runAsUser=0 (container "app" must not set runAsUser=0)'),
        id="runAsUser-0-container",
    ),
    pytest.param(
        pod(securityContext={"runAsNonRoot": True}),
        restricted(
            "seccompProfile",
            'seccompProfile (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
        ),
        id="seccomp-unset",
    ),
    pytest.param(
        pod(containers=[container(capabilities={"drop": ["NET_RAW"]})]),
        restricted(
            "capabilities",
            'unrestricted capabilities (container "app" must set securityContext.capabilities.drop=["ALL"])',
        ),
        id="capabilities-no-drop-all",
    ),
    pytest.param(
        # CHOWN is in the runtime's default set, so baseline lets a container add it; restricted does not.
        pod(containers=[container(capabilities={"drop": ["ALL"], "add": ["CHOWN"]})]),
        restricted(
            "capabilities",
            'unrestricted capabilities (container "app" must not include "CHOWN" in securityContext.capabilities.add)',
        ),
        id="capabilities-add-default-cap",
    ),
]


@pytest.mark.parametrize(("spec", "violation"), RESTRICTED_FAILURES)
def test_restricted_control_passes_baseline_and_fails_restricted(spec, violation):
    assert check_pod(spec, None, "baseline") == []
    assert check_pod(spec, None, "restricted") == [violation]


def test_restricted_allows_every_volume_type_on_its_list():
    volumes = [
        {"name": "config", "configMap": {"name": "app"}},
        {"name": "token", "secret": {"secretName": "app"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "scratch", "emptyDir": {}},  # empty, but set
        {"name": "bundle", "projected": {"sources": []}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "inline", "csi": {"driver": "secrets-store.csi.k8s.io"}},
        {"name": "ephemeral", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        {"name": "model", "image": {"reference": "registry.example/model:1"}},
        {"name": "defaulted"},  # no source: the API server defaults it to emptyDir before admission
    ]
    assert check_pod(pod(volumes=volumes), None, "restricted") == []
    assert check_pod(pod(volumes=[*volumes, {"name": "disk", "iscsi": {}}]), None, "restricted") == [
        restricted("restrictedVolumes", 'restricted volume types (volume "disk" uses restricted volume type "iscsi")')
    ]


def test_restricted_capabilities_allow_adding_only_net_bind_service():
    spec = pod(containers=[container(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})])
    assert check_pod(spec, None, "restricted") == []


def test_restricted_replaces_the_baseline_checks_it_tightens():
    # At restricted the stricter check runs instead of the baseline one, so a pod is not told twice.
    capabilities = pod(containers=[container(capabilities={"add": ["SYS_ADMIN", "NET_RAW"]})])
    assert check_pod(capabilities, None, "baseline") == [
        baseline(
            "capabilities",
            'non-default capabilities (container "app" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)',
        )
    ]
    assert check_pod(capabilities, None, "restricted") == [
        restricted(
            "capabilities",
            'unrestricted capabilities (container "app" must set securityContext.capabilities.drop=["ALL"]; '
            'container "app" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)',
        )
    ]

    host_path = pod(
        volumes=[
            {"name": "logs", "hostPath": {"path": "/var/log"}},
            {"name": "sock", "hostPath": {"path": "/run/x.sock"}},
        ]
    )
    assert check_pod(host_path, None, "baseline") == [
        baseline("hostPathVolumes", 'hostPath volumes (volumes "logs", "sock")')
    ]
    assert check_pod(host_path, None, "restricted") == [
        restricted(
            "restrictedVolumes",
            'restricted volume types (volumes "logs", "sock" use restricted volume type "hostPath")',
        )
    ]

    unconfined = pod_with_context(seccompProfile={"type": "Unconfined"})
    message = 'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'
    assert check_pod(unconfined, None, "baseline") == [baseline("seccompProfile", message)]
    assert check_pod(unconfined, None, "restricted") == [restricted("seccompProfile", message)]


# --- "unset" semantics: pod-level values cover containers that leave the field unset ------------------------------


def test_pod_level_run_as_non_root_covers_every_kind_of_container():
    spec = pod(
        initContainers=[container("init")],
        containers=[container("app")],
        ephemeralContainers=[container("debug")],
    )
    assert check_pod(spec, None, "restricted") == []
    spec["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    assert check_pod(spec, None, "restricted") == [
        restricted(
            "runAsNonRoot",
            'runAsNonRoot != true (pod or containers "init", "app", "debug" must set securityContext.runAsNonRoot=true)',
        )
    ]


def test_a_container_may_not_override_run_as_non_root_to_false():
    spec = pod(containers=[container("app"), container("sidecar", runAsNonRoot=False)])
    assert check_pod(spec, None, "restricted") == [
        restricted(
            "runAsNonRoot", 'runAsNonRoot != true (container "sidecar" must not set securityContext.runAsNonRoot=false)'
        )
    ]


def test_run_as_non_root_false_on_the_pod_fails_even_when_containers_say_true():
    spec = pod(securityContext=POD_CONTEXT | {"runAsNonRoot": False}, containers=[container(runAsNonRoot=True)])
    assert check_pod(spec, None, "restricted") == [
        restricted("runAsNonRoot", "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)")
    ]


def test_without_a_pod_level_value_each_container_must_set_run_as_non_root():
    context = {"seccompProfile": {"type": "RuntimeDefault"}}
    covered = pod(
        securityContext=context, containers=[container("a", runAsNonRoot=True), container("b", runAsNonRoot=True)]
    )
    assert check_pod(covered, None, "restricted") == []
    partly = pod(securityContext=context, containers=[container("a", runAsNonRoot=True), container("b")])
    assert check_pod(partly, None, "restricted") == [
        restricted(
            "runAsNonRoot", 'runAsNonRoot != true (pod or container "b" must set securityContext.runAsNonRoot=true)'
        )
    ]


def test_without_a_pod_level_seccomp_profile_each_container_must_set_one():
    context = {"runAsNonRoot": True}
    localhost = {"type": "Localhost", "localhostProfile": "app.json"}
    covered = pod(
        securityContext=context,
        containers=[container("a", seccompProfile=localhost), container("b", seccompProfile=localhost)],
    )
    assert check_pod(covered, None, "restricted") == []
    partly = pod(securityContext=context, containers=[container("a", seccompProfile=localhost), container("b")])
    assert check_pod(partly, None, "restricted") == [
        restricted(
            "seccompProfile",
            'seccompProfile (pod or container "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
        )
    ]


# --- init and ephemeral containers are checked like the others ----------------------------------------------------


def test_init_and_ephemeral_containers_are_checked():
    spec = pod(
        initContainers=[container("init", privileged=True, allowPrivilegeEscalation=None)],
        ephemeralContainers=[container("debug", allowPrivilegeEscalation=None)],
    )
    assert check_pod(spec, None, "restricted") == [
        baseline("privileged", 'privileged (container "init" must not set securityContext.privileged=true)'),
        restricted(
            "allowPrivilegeEscalation",
            'allowPrivilegeEscalation != false (containers "init", "debug" must set securityContext.allowPrivilegeEscalation=false)',
        ),
    ]


def test_violations_come_in_the_api_servers_order_and_words():
    # The denial kubectl prints for a bare container in a restricted namespace, after `violates PodSecurity ...: `.
    bare = {"containers": [{"name": "x", "image": "nginx"}]}
    assert ", ".join(v.message for v in check_pod(bare, None, "restricted", "latest")) == (
        'allowPrivilegeEscalation != false (container "x" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "x" must set securityContext.capabilities.drop=["ALL"]), '
        'runAsNonRoot != true (pod or container "x" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "x" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    )
    # Baseline checks first, then restricted; each group in upstream's check-ID order.
    spec = pod(hostNetwork=True, containers=[container(privileged=True, runAsUser=0)])
    assert [(v.level, v.control) for v in check_pod(spec, None, "restricted")] == [
        ("baseline", "hostNamespaces"),
        ("baseline", "privileged"),
        ("restricted", "runAsUser"),
    ]


def test_messages_for_several_offenders_follow_upstream():
    selinux = pod(
        securityContext=POD_CONTEXT | {"seLinuxOptions": {"type": "foo", "user": "bar", "role": "baz"}},
        containers=[
            container("a", seLinuxOptions={"type": "container_t"}),
            container("e", seLinuxOptions={"type": "bar"}),
            container("f", seLinuxOptions={"user": "bar"}),
            container("g", seLinuxOptions={"role": "baz"}),
        ],
    )
    assert check_pod(selinux, None, "baseline") == [
        baseline(
            "seLinuxOptions",
            'seLinuxOptions (pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: '
            'types "bar", "foo"; user may not be set; role may not be set)',
        )
    ]
    prefix = "container.apparmor.security.beta.kubernetes.io/"
    annotations = {
        prefix + "a": "",
        prefix + "b": "runtime/default",
        prefix + "c": "localhost/foo",
        prefix + "e": "unconfined",
        prefix + "f": "unknown",
    }
    assert check_pod(pod(), {"annotations": annotations}, "baseline") == [
        baseline(
            "appArmorProfile",
            "forbidden AppArmor profiles (annotations must not set AppArmor profile type to "
            f'"{prefix}e="unconfined"", "{prefix}f="unknown"")',
        )
    ]


# --- Windows pods -----------------------------------------------------------------------------------------------


def test_windows_pods_skip_the_linux_only_restricted_controls_from_v1_25():
    windows = {
        "os": {"name": "windows"},
        "securityContext": {"runAsNonRoot": True},
        "containers": [{"name": "app", "image": "mcr.microsoft.com/windows/nanoserver:ltsc2022"}],
    }
    assert check_pod(windows, None, "restricted") == []
    assert [v.control for v in check_pod(windows, None, "restricted", "v1.24")] == [
        "allowPrivilegeEscalation",
        "capabilities",
        "seccompProfile",
    ]
    # runAsNonRoot has no Windows exemption.
    windows["securityContext"] = {}
    assert [v.control for v in check_pod(windows, None, "restricted")] == ["runAsNonRoot"]


# --- versions -------------------------------------------------------------------------------------------------------


def test_host_in_probes_and_lifecycle_hooks_is_not_checked_by_a_1_33_server():
    # The probe/lifecycle `host` control arrived in policy v1.34; a 1.33 server evaluates every newer version,
    # and latest, with the newest rules it has.
    probe = {"httpGet": {"host": "169.254.169.254", "path": "/", "port": 80}}
    spec = pod(containers=[container() | {"livenessProbe": probe, "lifecycle": {"postStart": probe}}])
    for version in ("v1.33", "latest", "v1.34", "v1.40"):
        assert check_pod(spec, None, "baseline", version) == []
        assert check_pod(spec, None, "restricted", version) == []


def test_latest_is_the_v1_33_rules():
    spec = pod(
        hostPID=True,
        containers=[container(allowPrivilegeEscalation=True, seLinuxOptions={"type": "container_engine_t"})],
    )
    assert check_pod(spec, None, "restricted", "latest") == check_pod(spec, None, "restricted", "v1.33") != []


@pytest.mark.parametrize(
    ("spec", "metadata", "level", "allowed_from", "rejected_at"),
    [
        pytest.param(pod_with_context(sysctls=[{"name": "net.ipv4.tcp_wmem", "value": "4096 16384 4194304"}]), None, "baseline", "v1.32", "v1.31", id="sysctls-v1.32"),
        pytest.param(pod_with_context(sysctls=[{"name": "net.ipv4.tcp_keepalive_time", "value": "600"}]), None, "baseline", "v1.29", "v1.28", id="sysctls-v1.29"),
        pytest.param(pod_with_context(sysctls=[{"name": "net.ipv4.ip_local_reserved_ports", "value": "30000"}]), None, "baseline", "v1.27", "v1.26", id="sysctls-v1.27"),
        pytest.param(pod(containers=[container(seLinuxOptions={"type": "container_engine_t"})]), None, "baseline", "v1.31", "v1.30", id="seLinux-v1.31"),
    ],
)  # fmt: skip
def test_a_revision_applies_from_its_version(spec, metadata, level, allowed_from, rejected_at):
    assert check_pod(spec, metadata, level, allowed_from) == []
    assert check_pod(spec, metadata, level, "v1.33") == []
    assert check_pod(spec, metadata, level, rejected_at) != []


def test_seccomp_annotations_count_only_before_v1_19():
    metadata = {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}
    assert check_pod(pod(), metadata, "baseline", "v1.33") == []
    assert check_pod(pod(), metadata, "baseline", "v1.18") == [
        baseline(
            "seccompProfile",
            'seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")',
        )
    ]
    # Before v1.19 restricted has no seccomp check of its own, so the annotation check applies there too.
    assert check_pod(pod(), metadata, "restricted", "v1.18") == [
        baseline(
            "seccompProfile",
            'seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")',
        )
    ]
    container_annotation = {"annotations": {"container.seccomp.security.alpha.kubernetes.io/app": "docker/default"}}
    assert check_pod(pod(), container_annotation, "baseline", "v1.18") == []


def test_older_versions_lack_the_restricted_checks_added_later():
    root = pod_with_context(runAsUser=0)
    assert check_pod(root, None, "restricted", "v1.22") == []
    assert check_pod(root, None, "restricted", "v1.23") != []
    # Before v1.22 restricted capabilities were baseline's: adding a default capability was fine, dropping optional.
    chown = pod(containers=[container(capabilities={"add": ["CHOWN"]})])
    assert check_pod(chown, None, "restricted", "v1.21") == []
    assert check_pod(chown, None, "restricted", "v1.22") != []


def test_host_users_false_relaxes_nothing_on_1_33():
    # The user-namespace relaxation is behind an alpha gate on 1.33 (and only in policy v1.35 after that).
    spec = pod(
        hostUsers=False,
        securityContext={"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
        containers=[container(procMount="Unmasked")],
    )
    assert [v.control for v in check_pod(spec, None, "restricted")] == ["procMount", "runAsNonRoot", "runAsUser"]


@pytest.mark.parametrize("version", ["v1.33.0", "1.33", "v2.0", "v1.033", "Latest", "v1.33\n"])
def test_malformed_versions_are_refused(version):
    with pytest.raises(ValueError, match="latest"):
        check_pod(pod(), None, "baseline", version)


def test_unknown_levels_are_refused():
    assert LEVELS == ("privileged", "baseline", "restricted")
    with pytest.raises(ValueError, match="must be one of"):
        check_pod(pod(), None, "strict")


# --- manifests ----------------------------------------------------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": pod(containers=[container(privileged=True)])}


@pytest.mark.parametrize(
    "manifest",
    [
        {"apiVersion": "v1", "kind": "Pod", **TEMPLATE},
        {"apiVersion": "v1", "kind": "PodTemplate", "template": TEMPLATE},
        {"apiVersion": "v1", "kind": "ReplicationController", "spec": {"template": TEMPLATE}},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"template": TEMPLATE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": TEMPLATE}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"template": TEMPLATE}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "spec": {"template": TEMPLATE}},
        {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": TEMPLATE}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": TEMPLATE}}}},
    ],
    ids=lambda manifest: manifest["kind"],
)  # fmt: skip
def test_every_workload_kind_yields_its_pod_template(manifest):
    [(metadata, spec)] = pod_templates(manifest)
    assert metadata == TEMPLATE["metadata"]
    assert spec == TEMPLATE["spec"]
    assert [v.control for v in check_pod(spec, metadata, "baseline")] == ["privileged"]


@pytest.mark.parametrize(
    "manifest",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "data": {}},
        {"apiVersion": "v1", "kind": "ReplicationController", "spec": {"replicas": 0}},  # its template is optional
        # The same kind in another API group is not a workload the plugin knows.
        {"apiVersion": "example.com/v1", "kind": "Deployment", "spec": {"template": TEMPLATE}},
    ],
    ids=["ConfigMap", "ReplicationController-without-template", "custom-Deployment"],
)
def test_other_objects_yield_no_pod(manifest):
    assert list(pod_templates(manifest)) == []


def test_a_cronjobs_pod_template_is_checked_against_its_namespace():
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": {"spec": pod(containers=[container(runAsUser=0)])}}},
        },
    }
    [(metadata, spec)] = pod_templates(cronjob)
    assert check_pod(spec, metadata, **namespace_levels(namespace(enforce="restricted"))) == [
        restricted("runAsUser", 'runAsUser=0 (container "app" must not set runAsUser=0)')
    ]


# --- namespaces ---------------------------------------------------------------------------------------------------


def test_a_namespace_without_labels_enforces_privileged_latest():
    assert namespace_levels(namespace()) == {"level": "privileged", "version": "latest"}
    # Audit and warn labels do not enforce anything.
    assert namespace_levels(namespace(audit="restricted", warn="restricted")) == {
        "level": "privileged",
        "version": "latest",
    }


def test_a_namespace_enforces_its_labelled_level_and_version():
    assert namespace_levels(namespace(enforce="restricted")) == {"level": "restricted", "version": "latest"}
    assert namespace_levels(namespace(enforce="baseline", enforce_version="v1.30")) == {
        "level": "baseline",
        "version": "v1.30",
    }


@pytest.mark.parametrize("labels", [{"enforce": "strict"}, {"enforce": "baseline", "enforce_version": "1.30"}])
def test_a_namespace_with_invalid_labels_is_refused(labels):
    # The API server refuses to create such a namespace, so there is no decision to reproduce.
    with pytest.raises(ValueError):
        namespace_levels(namespace(**labels))
