"""The Foresail operator: reconciles LLMDeployments into Deployments and Services and scales them."""

GROUP = "foresail.dev"
VERSION = "v1alpha1"
PLURAL = "llmdeployments"
