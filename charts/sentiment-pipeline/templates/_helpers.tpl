{{/*
Shared helpers: names, labels, images, security contexts and generated secrets.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "sentiment-pipeline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> (63 characters max, DNS label). */}}
{{- define "sentiment-pipeline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one component's resources: <fullname>-<component>. Call with (dict "ctx" $ "component" "kafka"). */}}
{{- define "sentiment-pipeline.componentName" -}}
{{- printf "%s-%s" (include "sentiment-pipeline.fullname" .ctx | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" }}
{{- end }}

{{/* Chart label value. */}}
{{- define "sentiment-pipeline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels (no component). */}}
{{- define "sentiment-pipeline.labels" -}}
helm.sh/chart: {{ include "sentiment-pipeline.chart" . }}
{{ include "sentiment-pipeline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sentiment-pipeline
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels (no component). */}}
{{- define "sentiment-pipeline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sentiment-pipeline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component. Call with (dict "ctx" $ "component" "kafka"). */}}
{{- define "sentiment-pipeline.componentLabels" -}}
{{ include "sentiment-pipeline.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component. Call with (dict "ctx" $ "component" "kafka"). */}}
{{- define "sentiment-pipeline.componentSelectorLabels" -}}
{{ include "sentiment-pipeline.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Image reference. Call with (dict "image" .Values.x.image "ctx" $); an empty tag means appVersion. */}}
{{- define "sentiment-pipeline.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) }}
{{- end }}

{{/* The worker image: the variant picks the default tag (slim: appVersion; torch: appVersion-torch). */}}
{{- define "sentiment-pipeline.workerImage" -}}
{{- $suffix := ternary "-torch" "" (eq (.Values.worker.image.variant | default "slim") "torch") }}
{{- printf "%s:%s" .Values.worker.image.repository (default (printf "%s%s" .Chart.AppVersion $suffix) .Values.worker.image.tag | toString) }}
{{- end }}

{{/* Model backends the worker image runs (empty: all of them). */}}
{{- define "sentiment-pipeline.workerImageBackends" -}}
{{- if eq (.Values.worker.image.variant | default "slim") "slim" }}onnx-int8{{ end }}
{{- end }}

{{/* Operator ServiceAccount name. */}}
{{- define "sentiment-pipeline.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "sentiment-pipeline.componentName" (dict "ctx" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Pod security context: non-root with a fixed UID/GID, volumes group-owned by it, RuntimeDefault seccomp.
Call with the UID.
*/}}
{{- define "sentiment-pipeline.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context: read-only root filesystem, no privilege escalation, no capabilities. */}}
{{- define "sentiment-pipeline.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pull secrets block (pod spec level). */}}
{{- define "sentiment-pipeline.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
A generated secret value, stable across upgrades: the value already stored in the live Secret (read
back with lookup), otherwise a new random one. Random values are 22 letters/digits plus 2 digits, so
they always pass password-complexity rules that require a digit (Metabase's default does).
Call with (dict "ctx" $ "secret" "<name>" "key" "<key>").
Note: lookup returns nothing under `helm template`, `--dry-run` and GitOps tools that render with them
(Argo CD), so every such render makes fresh values: applied, they no longer match the databases and
Metabase's stored credentials. That is why values.yaml, NOTES.txt and docs/chart.md recommend
`existingSecret` for those workflows.
*/}}
{{- define "sentiment-pipeline.generatedValue" -}}
{{- $live := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- $data := dig "data" (dict) ($live | default (dict)) }}
{{- if hasKey $data .key }}
{{- index $data .key | b64dec }}
{{- else }}
{{- printf "%s%s" (randAlphaNum 22) (randNumeric 2) }}
{{- end }}
{{- end }}

{{/* Secret names (existingSecret or the chart's own). */}}
{{- define "sentiment-pipeline.mongodbSecretName" -}}
{{- default (include "sentiment-pipeline.componentName" (dict "ctx" . "component" "mongodb")) .Values.mongodb.auth.existingSecret }}
{{- end }}

{{- define "sentiment-pipeline.mysqlSecretName" -}}
{{- default (include "sentiment-pipeline.componentName" (dict "ctx" . "component" "mysql")) .Values.mysql.auth.existingSecret }}
{{- end }}

{{- define "sentiment-pipeline.metabaseSecretName" -}}
{{- default (include "sentiment-pipeline.componentName" (dict "ctx" . "component" "metabase")) .Values.metabase.existingSecret }}
{{- end }}

{{/* In-cluster DNS names of the data plane services. */}}
{{- define "sentiment-pipeline.kafkaHost" -}}
{{- printf "%s.%s.svc" (include "sentiment-pipeline.componentName" (dict "ctx" . "component" "kafka")) .Release.Namespace }}
{{- end }}

{{- define "sentiment-pipeline.mongodbHost" -}}
{{- printf "%s.%s.svc" (include "sentiment-pipeline.componentName" (dict "ctx" . "component" "mongodb")) .Release.Namespace }}
{{- end }}

{{- define "sentiment-pipeline.mysqlHost" -}}
{{- printf "%s.%s.svc" (include "sentiment-pipeline.componentName" (dict "ctx" . "component" "mysql")) .Release.Namespace }}
{{- end }}

{{- define "sentiment-pipeline.metabaseUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "sentiment-pipeline.componentName" (dict "ctx" . "component" "metabase")) .Release.Namespace (int .Values.metabase.port) }}
{{- end }}

{{/* A PVC spec for volumeClaimTemplates. Call with (dict "persistence" .Values.x.persistence). */}}
{{- define "sentiment-pipeline.pvcSpec" -}}
accessModes:
  - ReadWriteOnce
{{- with .persistence.storageClass }}
storageClassName: {{ . | quote }}
{{- end }}
resources:
  requests:
    storage: {{ .persistence.size }}
{{- end }}
