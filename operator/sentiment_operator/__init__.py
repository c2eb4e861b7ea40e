"""The SentimentPipeline operator: reconciles a ``SentimentPipeline`` custom resource into worker children.

Modules, one concern each:

- ``spec``: the validated CR spec (pydantic), defaults identical to the CRD schema;
- ``builders``: pure functions, spec -> ConfigMap / Deployments / Service / ServiceMonitor manifests;
- ``status``: pure functions, children's observed state -> phase and conditions;
- ``autoscaling``: pure, backlog -> inference replicas; ``backlog`` reads the backlog gauge from the workers;
- ``kube``: the one adapter to the Kubernetes API (server-side apply, reads, status patches);
- ``reconcile``: the level-triggered path (desired -> apply -> read back -> status);
- ``handlers``: thin kopf handlers; ``metrics``: the operator's own Prometheus metrics;
- ``settings``: the operator's own configuration (environment).
"""

GROUP = "sentiment.io"
VERSION = "v1alpha1"
KIND = "SentimentPipeline"
PLURAL = "sentimentpipelines"
FIELD_MANAGER = "sentiment-operator"
