{{/* Template helpers: names, labels and the image reference. */}}

{{/* The chart's name: "kruise" unless nameOverride is set. */}}
{{- define "kruise.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of the cluster-scoped objects (ClusterRoles, bindings, admission policy): the release
name, unless it already contains the chart name, or fullnameOverride.
*/}}
{{- define "kruise.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kruise.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "manager"). Never change them: selectors are immutable. */}}
{{- define "kruise.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kruise.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of an object; call with (dict "ctx" $ "component" "manager"). */}}
{{- define "kruise.labels" -}}
{{ include "kruise.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The image of both binaries: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "kruise.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
