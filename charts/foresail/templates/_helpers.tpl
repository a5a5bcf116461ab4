{{/* The release's full name, at most 63 characters. */}}
{{- define "foresail.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "foresail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of the operator pods (the Deployment's selector: keep them stable). */}}
{{- define "foresail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "foresail.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "foresail.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "foresail.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: foresail
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels of the activator pods (its Deployment's and Service's selector: keep them stable). */}}
{{- define "foresail.activatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "foresail.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: activator
{{- end -}}

{{- define "foresail.activatorLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "foresail.activatorSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: foresail
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "foresail.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "foresail.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator's image (the activator's too): by digest when image.digest is set, else by tag. */}}
{{- define "foresail.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The name of the activator's objects: the full name cut to leave room for "-activator". */}}
{{- define "foresail.activatorName" -}}
{{- printf "%s-activator" (include "foresail.fullname" . | trunc 53 | trimSuffix "-") -}}
{{- end -}}

{{/* The activator's own account; without serviceAccount.create, the one the operator runs as. */}}
{{- define "foresail.activatorServiceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- include "foresail.activatorName" . -}}
{{- else -}}
{{- include "foresail.serviceAccountName" . -}}
{{- end -}}
{{- end -}}

{{/* Least privilege for every container: the same defaults the operator gives inference pods. */}}
{{- define "foresail.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
What the operator does in each namespace it manages, derived from its API calls
(tests/chart/test_rbac.py runs it and fails when it makes a call these rules do not allow).
*/}}
{{- define "foresail.workloadRules" -}}
- apiGroups: [foresail.dev]
  resources: [llmdeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [foresail.dev]
  resources: [llmdeployments/status]
  verbs: [patch]
# Owned objects carry ownerReferences with blockOwnerDeletion, which clusters with the
# OwnerReferencesPermissionEnforcement admission plugin allow only with this permission.
- apiGroups: [foresail.dev]
  resources: [llmdeployments/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# `list` only to name the HorizontalPodAutoscaler (or KEDA's) that fights over a Deployment's replicas.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list]
# `list` and `watch` on Services and budgets: one the operator owns that is deleted or edited is put back.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# `delete` only for the budget of a deployment whose spec disables it (disruptionBudget.enabled: false).
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# `patch` only to set controller.kubernetes.io/pod-deletion-cost before a scale-down (idlest pods go first).
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch]
# Only `get`: the operator reads the Secrets and ConfigMaps an LLMDeployment names (spec.model.tokenSecretRef,
# spec.runtime.mounts) to check they exist; it cannot list them or read one whose name it is not given.
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/*
Relabeling of the inference pods' targets, shared by the PodMonitor and the plain scrape config:
the operator queries the vLLM-style metrics grouped by exactly these two target labels.
*/}}
{{- define "foresail.inferenceTargetLabels" -}}
- sourceLabels: [__meta_kubernetes_namespace]
  targetLabel: namespace
- sourceLabels: [__meta_kubernetes_pod_label_foresail_dev_llmdeployment]
  targetLabel: llmdeployment
{{- end -}}

{{/*
What the activator does in each namespace it serves: it lists and watches LLMDeployments to route and
to see ready replicas, and patches an annotation on one to ask the operator for a replica.
*/}}
{{- define "foresail.activatorRules" -}}
- apiGroups: [foresail.dev]
  resources: [llmdeployments]
  verbs: [list, watch, patch]
{{- if ne .Values.activator.routing "service" }}
# a deployment's ready pods, to balance requests over them (`--routing pods` or `prefix`)
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
{{- end }}
{{- end -}}

{{/* A Prometheus duration (2m, 1h30m, 500ms; y is 365d) in milliseconds. */}}
{{- define "foresail.durationMs" -}}
{{- $ms := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|[smhdwy])" . -1 -}}
{{- $number := regexFind "^[0-9]+" . -}}
{{- $total = add $total (mul $number (get $ms (trimPrefix $number .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* A map of headers as Name=value,Name2=value2 (FORESAIL_PROMETHEUS_HEADERS), in key order. */}}
{{- define "foresail.headers" -}}
{{- $pairs := list -}}
{{- range $name, $value := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $name $value) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end }}

{{/*
NetworkPolicy egress to the inference pods' port (8000) in the namespaces Foresail serves.
*/}}
{{- define "foresail.inferenceEgress" -}}
- to:
    - podSelector:
        matchLabels:
          app.kubernetes.io/managed-by: foresail
      {{- if .Values.watchNamespaces }}
      namespaceSelector:
        matchExpressions:
          - key: kubernetes.io/metadata.name
            operator: In
            values:
              {{- toYaml .Values.watchNamespaces | nindent 14 }}
      {{- else }}
      namespaceSelector: {}
      {{- end }}
  ports:
    - port: 8000
      protocol: TCP
{{- end -}}
