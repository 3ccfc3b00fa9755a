"""mlops-platform's policy pack: `pulumi preview --policy-pack policy --policy-pack-config policy/config.<stack>.json`."""

from pack import policies
from pulumi_policy import PolicyPack

PolicyPack("mlops-platform", policies=policies())
