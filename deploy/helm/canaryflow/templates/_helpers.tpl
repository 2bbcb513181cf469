{{/* Names and labels shared by every object of the release. */}}
{{- define "canaryflow.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "canaryflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "canaryflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "canaryflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (worker or controller); call with (dict "root" $ "component" "worker"). */}}
{{- define "canaryflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canaryflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "canaryflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "canaryflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "canaryflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Settings read by canaryflow/settings.py, common to the worker and the controller. */}}
{{- define "canaryflow.env" -}}
- name: TEMPORAL_ADDRESS
  value: {{ .Values.temporal.address | quote }}
- name: TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
{{- with .Values.temporal.apiKey.existingSecret }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.temporal.apiKey.key | quote }}
{{- end }}
{{- if .Values.temporal.tls.enabled }}
- name: TEMPORAL_TLS
  value: "true"
{{- end }}
{{- with .Values.temporal.tls }}
{{- if and .existingSecret .clientCert }}
- name: TEMPORAL_TLS_CLIENT_CERT_PATH
  value: /etc/canaryflow/temporal-tls/tls.crt
- name: TEMPORAL_TLS_CLIENT_KEY_PATH
  value: /etc/canaryflow/temporal-tls/tls.key
{{- end }}
{{- if and .existingSecret .serverCA }}
- name: TEMPORAL_TLS_SERVER_CA_CERT_PATH
  value: /etc/canaryflow/temporal-tls/ca.crt
{{- end }}
{{- end }}
{{- with .Values.temporal.tls.serverName }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
- name: CANARYFLOW_TASK_QUEUE
  value: {{ .Values.taskQueue | quote }}
{{- with .Values.clusterName }}
- name: CANARYFLOW_CLUSTER_NAME
  value: {{ . | quote }}
{{- end }}
- name: CANARYFLOW_METRICS_SERVER
  value: {{ .Values.metricsServer | quote }}
- name: CANARYFLOW_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: CANARYFLOW_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- with .Values.eventWebhook }}
- name: CANARYFLOW_EVENT_WEBHOOK
  value: {{ . | quote }}
{{- end }}
{{- with .Values.meshProvider }}
- name: CANARYFLOW_MESH_PROVIDER
  value: {{ . | quote }}
{{- end }}
{{- with .Values.includeLabelPrefix }}
- name: CANARYFLOW_INCLUDE_LABEL_PREFIX
  value: {{ . | quote }}
{{- end }}
- name: CANARYFLOW_KUBERNETES
  value: "on"
- name: CANARYFLOW_STATE_DIR
  value: /var/run/canaryflow
{{- end -}}

{{/* Volumes of both components: writable state dir and /tmp (the root filesystem is read-only), the TLS secret. */}}
{{- define "canaryflow.volumes" -}}
- name: state
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- with .Values.temporal.tls.existingSecret }}
- name: temporal-tls
  secret:
    secretName: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "canaryflow.volumeMounts" -}}
- name: state
  mountPath: /var/run/canaryflow
- name: tmp
  mountPath: /tmp
{{- if .Values.temporal.tls.existingSecret }}
- name: temporal-tls
  mountPath: /etc/canaryflow/temporal-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Scheduling and security settings of both components' pods. */}}
{{- define "canaryflow.podSpec" -}}
serviceAccountName: {{ include "canaryflow.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "canaryflow.volumes" . | nindent 2 }}
{{- end -}}
