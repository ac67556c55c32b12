{{/* Template helpers: names, namespaces, labels, the image reference and the pod-level snippets both workloads share. */}}

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

{{/* The image of both binaries: repository@digest when image.digest is set, else repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "kruise.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{/* Namespace of the daemon's DaemonSet, ServiceAccount and metrics Service: daemon.namespace, else the release namespace. */}}
{{- define "kruise.daemonNamespace" -}}
{{- .Values.daemon.namespace | default .Release.Namespace -}}
{{- end -}}

{{/*
Pod template labels; call with (dict "ctx" $ "component" "manager"). The component's podLabels
come after the chart's labels and never replace one of them, so the selector stays as it is.
*/}}
{{- define "kruise.podLabels" -}}
{{- $own := include "kruise.labels" . | fromYaml -}}
{{- $extra := dict -}}
{{- range $k, $v := (index .ctx.Values .component).podLabels -}}
{{- if not (hasKey $own $k) -}}
{{- $_ := set $extra $k $v -}}
{{- end -}}
{{- end -}}
{{ include "kruise.labels" . }}
{{- with $extra }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/* Pod template annotations (the component's podAnnotations); empty when there are none. Same call as kruise.podLabels. */}}
{{- define "kruise.podAnnotations" -}}
{{- with (index .ctx.Values .component).podAnnotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
Pod-level fields both workloads share: the component's priorityClassName, and the image pull
secrets (the global imagePullSecrets, then the component's own). Same call as kruise.podLabels.
*/}}
{{- define "kruise.podCommon" -}}
{{- $values := index .ctx.Values .component -}}
{{- with $values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with concat (.ctx.Values.imagePullSecrets | default list) ($values.imagePullSecrets | default list) }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Whether the chart renders the kruise-daemon-config Namespace: "true" or empty. daemonConfigNamespace.create
"true" (string or YAML boolean): always; "false": never; "auto": unless it exists and is not this
release's (OpenKruise's chart creates the same namespace), found by lookup (which finds nothing
under `helm template`).
*/}}
{{- define "kruise.daemonConfigNamespace.render" -}}
{{- $create := toString .Values.daemonConfigNamespace.create -}}
{{- if eq $create "true" -}}
true
{{- else if eq $create "auto" -}}
{{- $existing := lookup "v1" "Namespace" "" "kruise-daemon-config" -}}
{{- if not $existing -}}
true
{{- else -}}
{{- $annotations := $existing.metadata.annotations | default dict -}}
{{- if and (eq (get $annotations "meta.helm.sh/release-name") .Release.Name) (eq (get $annotations "meta.helm.sh/release-namespace") .Release.Namespace) -}}
true
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Container args: the chart's flags, then the component's extraArgs; call with
(dict "flags" (list (list "--flag" value) ...) "extra" .Values.<component>.extraArgs). A flag that
extraArgs sets ("--flag" or "--flag=value") is left out of the chart's, as both binaries refuse a
flag given twice ("the argument '--flag' cannot be used multiple times").
*/}}
{{- define "kruise.args" -}}
{{- $extra := list -}}
{{- range .extra -}}
{{- $extra = append $extra (toString .) -}}
{{- end -}}
{{- $lines := list -}}
{{- range $flag := .flags -}}
{{- $name := index $flag 0 -}}
{{- $given := false -}}
{{- range $extra -}}
{{- if or (eq . $name) (hasPrefix (printf "%s=" $name) .) -}}
{{- $given = true -}}
{{- end -}}
{{- end -}}
{{- if not $given -}}
{{- $lines = append $lines (printf "- %s" $name) -}}
{{- $lines = append $lines (printf "- %s" (index $flag 1 | toString | quote)) -}}
{{- end -}}
{{- end -}}
{{- range $extra -}}
{{- $lines = append $lines (printf "- %s" (quote .)) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}
