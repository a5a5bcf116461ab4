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
NetworkPolicy egress to the cluster DNS: port 53 anywhere, and OpenShift's CoreDNS pods, which listen on 5353 behind
their Service's 53 (a policy sees the pod's port: 53 alone dropped every lookup there).
*/}}
{{- define "foresail.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: openshift-dns
  ports:
    - port: 5353
      protocol: UDP
    - port: 5353
      protocol: TCP
{{- end -}}

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

{{/* A resource quantity (100m, 512Mi, 1.5G, 2e3, a number) as a float: cores, bytes or a count. */}}
{{- define "foresail.quantity" -}}
{{- $text := toString . -}}
{{- $number := regexFind "^([0-9]+(\\.[0-9]*)?|\\.[0-9]+)" $text -}}
{{- $suffix := trimPrefix $number $text -}}
{{- $up := dict "" 1 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824
  "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 -}}
{{- $down := dict "n" 1e9 "u" 1e6 "m" 1e3 -}}
{{- if not (or (hasKey $up $suffix) (hasKey $down $suffix)) -}}
{{- /* a decimal exponent, e3 or E-2: ten to its power up or down */ -}}
{{- $exponent := regexReplaceAll "^[eE]\\+?" $suffix "" | atoi -}}
{{- $power := 1.0 -}}
{{- range until (ternary (sub 0 $exponent) $exponent (lt $exponent 0) | int) -}}
{{- $power = mulf $power 10 -}}
{{- end -}}
{{- $_ := set (ternary $down $up (lt $exponent 0)) $suffix $power -}}
{{- end -}}
{{- if hasKey $down $suffix -}}
{{- divf (float64 $number) (get $down $suffix) -}}
{{- else -}}
{{- mulf (float64 $number) (get $up $suffix) -}}
{{- end -}}
{{- end -}}

{{/*
Fail where a container's request is above its limit (helm merges a raised request with the default limit), as the
API server would refuse the Deployment midway through the install. Takes (dict "what" VALUE-PATH "resources" MAP).
*/}}
{{- define "foresail.checkResources" -}}
{{- $limits := .resources.limits | default (dict) -}}
{{- range $name, $request := .resources.requests | default (dict) -}}
{{- if hasKey $limits $name -}}
{{- $limit := get $limits $name -}}
{{- /* a hair of slack: 300m and 0.3 may differ in the last bit of a float */ -}}
{{- if gt (include "foresail.quantity" $request | float64) (mulf (include "foresail.quantity" $limit | float64) 1.000000001) -}}
{{- fail (printf "%s.requests.%s (%v) is above %s.limits.%s (%v), which Kubernetes refuses: raise the limit too" $.what $name $request $.what $name $limit) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
