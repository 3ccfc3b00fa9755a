"""`mlops-platform:storage`: the one StorageClass every claim of the stack uses."""

from __future__ import annotations

from pydantic import Field

from components.config.base import Block
from components.config.formats import DnsName, Flag, StringMap, Text, one_of

BINDING_MODES = ("WaitForFirstConsumer", "Immediate")
BindingMode = one_of(*BINDING_MODES)


class StorageConfig(Block):
    """The one StorageClass every claim of the stack uses; it always has reclaimPolicy Retain."""

    class_name: DnsName = Field("mlops-retained", description="Name of the StorageClass the stack creates.")
    provisioner: Text = Field(
        "rancher.io/local-path",
        description="CSI driver or provisioner (Kind: rancher.io/local-path; EKS: ebs.csi.aws.com).",
    )
    volume_binding_mode: BindingMode = Field(
        "WaitForFirstConsumer",
        description="WaitForFirstConsumer binds a volume where its pod is scheduled; Immediate binds at claim time.",
    )
    allow_volume_expansion: Flag = Field(
        False,
        description="Whether claims may grow in place (the provisioner must support it; local-path does not).",
    )
    parameters: StringMap = Field(
        default_factory=dict,
        description='Provisioner parameters, strings only, e.g. {type: gp3, encrypted: "true"}.',
    )
