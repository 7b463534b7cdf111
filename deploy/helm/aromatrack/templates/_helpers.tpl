{{- define "aromatrack.name" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}

{{- define "aromatrack.labels" -}}
app.kubernetes.io/name: aromatrack
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aromatrack.selector" -}}
app.kubernetes.io/name: aromatrack
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aromatrack.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}

{{/* Kafka's bootstrap address: Strimzi's internal plain listener, or the external one (required then). */}}
{{- define "aromatrack.kafkaBootstrap" -}}
{{- if .Values.kafka.strimzi.enabled -}}
{{ .Values.kafka.strimzi.clusterName }}-kafka-bootstrap:9092
{{- else -}}
{{ required "kafka.externalBootstrap is required when kafka.strimzi.enabled is false" .Values.kafka.externalBootstrap }}
{{- end -}}
{{- end -}}

{{- define "aromatrack.influxUrl" -}}
{{- if .Values.influxdb.enabled -}}
http://{{ include "aromatrack.name" . }}-influxdb:8086
{{- else -}}
{{ required "influxdb.externalUrl is required when influxdb.enabled is false" .Values.influxdb.externalUrl }}
{{- end -}}
{{- end -}}

{{/* What the API, the notifier and the workers share: where Kafka and InfluxDB are, the app id, the topic
copies, and the store's DSN from its Secret. */}}
{{- define "aromatrack.env" -}}
- name: AROMATRACK_KAFKA
  value: {{ include "aromatrack.kafkaBootstrap" . | quote }}
- name: AROMATRACK_INFLUX_URL
  value: {{ include "aromatrack.influxUrl" . | quote }}
- name: AROMATRACK_INFLUX_DB
  value: {{ .Values.influxdb.database | quote }}
- name: AROMATRACK_APP_ID
  value: {{ .Values.appId | quote }}
- name: AROMATRACK_TOPIC_REPLICAS
  value: {{ .Values.topicReplicas | quote }}
- name: AROMATRACK_STATE_DIR
  value: /var/lib/aromatrack
{{- end -}}

{{/* The store's DSN (AROMATRACK_STORE_DSN): the bundled PostgreSQL's, its password apart in
AROMATRACK_STORE_PASSWORD (deploy/settings.py fills it in), or an external one whole from the Secret. */}}
{{/* An InfluxDB password from the passwords Secret: (list . "WRITER" "writer-password"). */}}
{{- define "aromatrack.influxPassword" -}}
{{- $root := index . 0 -}}
- name: AROMATRACK_INFLUX_{{ index . 1 }}_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.influxdb.passwordsSecret }}
      key: {{ index . 2 }}
{{- end -}}

{{- define "aromatrack.readerPasswords" -}}
{{ include "aromatrack.influxPassword" (list . "COACHING_READER" "coaching-reader-password") }}
{{ include "aromatrack.influxPassword" (list . "CLINICAL_READER" "clinical-reader-password") }}
{{- end -}}

{{- define "aromatrack.storeEnv" -}}
{{- if .Values.postgresql.enabled }}
- name: AROMATRACK_STORE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.store.dsnSecret }}
      key: password
- name: {{ .Values.store.dsnEnv }}
  value: {{ printf "postgresql://%s@%s-postgresql:5432/%s" .Values.postgresql.user (include "aromatrack.name" .) .Values.postgresql.database | quote }}
{{- else }}
- name: {{ .Values.store.dsnEnv }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.store.dsnSecret }}
      key: dsn
{{- end }}
{{- end -}}

{{/* Our containers run as the image's unprivileged user, read-only, with nothing extra. */}}
{{- define "aromatrack.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "aromatrack.probes" -}}
startupProbe:
  httpGet: {path: /livez, port: {{ .port }}}
  periodSeconds: 5
  failureThreshold: {{ .startupFailures | default 60 }}
livenessProbe:
  httpGet: {path: /livez, port: {{ .port }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 2
{{- end -}}
