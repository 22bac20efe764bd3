{{/* Names and labels shared by every template. */}}

{{- define "forja.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "forja.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "forja.labels" -}}
{{ include "forja.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: forja
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "forja.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "forja.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "forja.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The operator configuration file, exactly the keys forja_operator.config reads. */}}
{{- define "forja.config" -}}
{{- $store := dict "uri" .Values.config.artifactStore.uri -}}
{{- with .Values.config.artifactStore.endpoint }}{{ $_ := set $store "endpoint" . }}{{ end -}}
{{- with .Values.config.artifactStore.credentialsSecret }}{{ $_ := set $store "credentialsSecret" . }}{{ end -}}
trainerImage: {{ .Values.config.trainerImage | quote }}
trainerTfImage: {{ .Values.config.trainerTfImage | quote }}
serverImage: {{ .Values.config.serverImage | quote }}
artifactStore:
{{ toYaml $store | indent 2 }}
watchNamespaces: {{ toJson .Values.config.watchNamespaces }}
metricsPort: {{ .Values.config.metricsPort }}
healthPort: {{ .Values.config.healthPort }}
{{- if hasKey .Values.config "nodeLostSeconds" }}
nodeLostSeconds: {{ .Values.config.nodeLostSeconds }}
{{- end }}
{{- if hasKey .Values.config "unschedulableSeconds" }}
unschedulableSeconds: {{ .Values.config.unschedulableSeconds }}
{{- end }}
leaderElection:
  enabled: {{ .Values.config.leaderElection.enabled }}
  leaseName: {{ .Values.config.leaderElection.leaseName | quote }}
  namespace: {{ .Release.Namespace | quote }}
benchmark:
{{ toYaml .Values.config.benchmark | indent 2 }}
{{- end -}}
