{{/* Names: "<release>-<mode>" (release oxcol: oxcol-gateway, ...), or the release name
when it already ends with the mode (release oxcol-gateway: oxcol-gateway). */}}
{{- define "oxcol.fullname" -}}
{{- if hasSuffix (printf "-%s" .Values.mode) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Values.mode | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The node agent's default gateway: the gateway Service of the release with the same
prefix in the same namespace (release oxcol or oxcol-node-agent: oxcol-gateway). */}}
{{- define "oxcol.defaultGateway" -}}
{{- printf "%s-gateway.%s.svc:4317" (trimSuffix "-node-agent" .Release.Name) .Release.Namespace -}}
{{- end -}}

{{/* The modes this chart renders; anything else fails the render with the fix. */}}
{{- define "oxcol.checkMode" -}}
{{- if not (has .Values.mode (list "sidecar" "node-agent" "gateway")) -}}
{{- fail (printf "mode %q is not one of sidecar, node-agent, gateway: set --set mode=gateway (or node-agent, sidecar)" (toString .Values.mode)) -}}
{{- end -}}
{{- end -}}

{{- define "oxcol.selectorLabels" -}}
app.kubernetes.io/name: oxcol
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "oxcol.labels" -}}
{{ include "oxcol.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "oxcol.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Whether `config` is rendered as a third config file. */}}
{{- define "oxcol.hasValuesConfig" -}}
{{- if or (not .Values.defaultConfig) (gt (len .Values.config) 0) -}}true{{- end -}}
{{- end -}}

{{/* The args every mode starts oxcol with. */}}
{{- define "oxcol.args" -}}
{{- $args := list "--config" "/etc/oxcol/config.yaml" "--config" "/etc/oxcol/kubernetes.yaml" -}}
{{- if include "oxcol.hasValuesConfig" . -}}
{{- $args = concat $args (list "--config" "/etc/oxcol/values.yaml") -}}
{{- end -}}
{{- $args = append $args "--watch-config" -}}
{{- toJson $args -}}
{{- end -}}

{{/* The oxcol container's fields shared by every mode (after name, before env). */}}
{{- define "oxcol.containerHead" -}}
image: {{ include "oxcol.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: {{ include "oxcol.args" . }}
{{- end -}}

{{- define "oxcol.probes" -}}
livenessProbe:
  httpGet:
    path: /
    port: health
  initialDelaySeconds: 5
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /
    port: health
  periodSeconds: {{ if eq .Values.mode "gateway" }}5{{ else }}10{{ end }}
{{- end -}}

{{- define "oxcol.securityContext" -}}
{{- if and (eq .Values.mode "node-agent") .Values.nodeAgent.readOtherProcessesMemory -}}
securityContext:
  runAsNonRoot: false
  runAsUser: 0
  runAsGroup: 0
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: ["ALL"]
    add: ["SYS_PTRACE"]
  seccompProfile:
    type: RuntimeDefault
{{- else -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}
{{- end -}}
