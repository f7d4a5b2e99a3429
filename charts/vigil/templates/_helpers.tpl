{{/*
Labels of every object: the same as config/default's, plus Helm's own.
*/}}
{{- define "vigil.labels" -}}
app.kubernetes.io/name: vigil
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
The manager's pods. Not the release: object names are fixed, so one cluster
holds one Vigil.
*/}}
{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/component: controller
{{- end }}

{{/*
namespaceSelector as `vigil controller --namespace-selector` wants it: k=v,k2=v2.
*/}}
{{- define "vigil.namespaceSelectorFlag" -}}
{{- $terms := list }}
{{- range $k, $v := .Values.namespaceSelector }}
{{- $terms = append $terms (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $terms }}
{{- end }}

{{/*
The metrics port's name says its scheme, which the ServiceMonitor follows.
*/}}
{{- define "vigil.metricsPortName" -}}
{{- ternary "https" "http" .Values.metrics.secure }}
{{- end }}
