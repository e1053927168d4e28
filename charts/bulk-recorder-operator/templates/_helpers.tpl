{{/* The chart's name. */}}
{{- define "bro.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, used for every object (and for the leader-election Lease). */}}
{{- define "bro.fullname" -}}
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

{{/* Labels that select the operator's pods; never change them on upgrade. */}}
{{- define "bro.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bro.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bro.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "bro.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "bro.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bro.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Lease the replicas elect a leader with (--lease-name), in the release namespace. */}}
{{- define "bro.leaseName" -}}
{{- include "bro.fullname" . }}
{{- end }}

{{- define "bro.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "bro.recorderImage" -}}
{{ .Values.recorderImage.repository }}:{{ .Values.recorderImage.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Refuses an install whose watchNamespace does not exist, before anything is created: every
template renders before Helm creates the first object, so a `fail` here leaves no release, no
operator and no RBAC behind (only the CRD, which Helm installs first and never removes). The
check asks the cluster (`lookup`) and so runs only where Helm talks to one: `helm template` and
`--dry-run=client` see no cluster (kube-system looks absent) and skip it. The release's own
namespace is left to Helm (`--create-namespace` creates it after rendering).
*/}}
{{- define "bro.checkWatchNamespace" -}}
{{- $ns := .Values.watchNamespace -}}
{{- if and $ns (ne $ns .Release.Namespace) (lookup "v1" "Namespace" "" "kube-system") -}}
{{- if not (lookup "v1" "Namespace" "" $ns) -}}
{{- fail (printf "watchNamespace %q does not exist: create it first (kubectl create namespace %s), or leave watchNamespace empty to watch every namespace; nothing was installed" $ns $ns) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* Whether the cluster serves a Prometheus Operator kind (monitoring.coreos.com/v1/<kind>). */}}
{{- define "bro.servesMonitoring" -}}
{{- if .root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind) }}true{{ end -}}
{{- end }}
