"""Explicit providers built from typed config; Pulumi.yaml disables the ambient default providers."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.config import PROJECT, StackConfig


def kubernetes_provider(config: StackConfig) -> k8s.Provider:
    """The one kubernetes provider every component uses, pinned to a kubeconfig context."""
    return k8s.Provider(
        "kubernetes",
        context=config.kube_context,
        # Server-side apply handles large CRDs and field ownership; it is the default, stated here to stay so.
        enable_server_side_apply=True,
    )


def providers_for(config: StackConfig) -> pulumi.ResourceOptions:
    """The options every component is built with: the kubernetes provider and the object store engine's provider."""
    return pulumi.ResourceOptions(providers=[kubernetes_provider(config), *cloud_providers(config)])


def cloud_providers(config: StackConfig) -> list[pulumi.ProviderResource]:
    """The object store engine's provider: aws for s3, cloudflare for r2, none for minio.

    Each SDK is imported only by the engine that uses it: importing pulumi_cloudflare alone takes seconds."""
    store = config.object_store
    if store.engine == "s3":
        import pulumi_aws as aws

        return [
            aws.Provider(
                "aws",
                region=store.region,
                profile=store.aws_profile or None,
                assume_roles=[aws.ProviderAssumeRoleArgs(role_arn=store.aws_role_arn)] if store.aws_role_arn else None,
                default_tags=aws.ProviderDefaultTagsArgs(tags={"managed-by": "pulumi", "project": PROJECT, "stack": config.stack}),
            )
        ]
    if store.engine == "r2":
        import pulumi_cloudflare as cloudflare

        return [cloudflare.Provider("cloudflare", api_token=pulumi.Config().require_secret("cloudflareApiToken"))]
    return []
