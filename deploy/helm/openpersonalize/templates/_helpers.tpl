{{/* The prefix of every object's name: the release's (opz -> opz-api, opz-settings, ...). */}}
{{- define "opz.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* What selects a component's pods; (dict "root" $ "component" "api"). */}}
{{- define "opz.selectorLabels" -}}
app.kubernetes.io/name: openpersonalize
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object's labels; with "component", the selector labels too. */}}
{{- define "opz.labels" -}}
{{- if .component -}}
{{ include "opz.selectorLabels" . }}
{{ end -}}
app.kubernetes.io/part-of: openpersonalize
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* A component's metadata: name, namespace, labels; (dict "root" $ "component" "api" "name" "api"). */}}
{{- define "opz.metadata" -}}
name: {{ include "opz.fullname" .root }}-{{ .name }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "opz.labels" . | nindent 2 }}
{{- end -}}

{{- define "opz.image" -}}
{{- printf "%s:%s" .repository (.root.Values.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* The pod-level fields every workload shares. */}}
{{- define "opz.podSpec" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
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
{{- end -}}

{{/* A container's settings (the ConfigMap, then the optional Secret) and security context. */}}
{{- define "opz.containerCommon" -}}
imagePullPolicy: {{ .Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "opz.fullname" . }}-settings
  {{- with .Values.existingSecret }}
  - secretRef:
      name: {{ . }}
      optional: true
  {{- end }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{/* /data (OPZ_DATA_DIR) and /tmp: emptyDirs, a cache lost with the pod; with keys=true, the
access keys' Secret, read-only. Mounts and volumes: (dict "root" $ "keys" true). */}}
{{- define "opz.volumeMounts" -}}
volumeMounts:
  - name: data
    mountPath: /data
  - name: tmp
    mountPath: /tmp
  {{- if .keys }}
  - name: keys
    mountPath: /etc/openpersonalize/keys
    readOnly: true
  {{- end }}
{{- end -}}

{{- define "opz.volumes" -}}
volumes:
  - name: data
    emptyDir: {}
  - name: tmp
    emptyDir: {}
  {{- if .keys }}
  - name: keys
    secret:
      secretName: {{ .root.Values.keysSecret }}
      optional: true
      defaultMode: 0440  # octal: readable by the pod's group (fsGroup), no one else
  {{- end }}
{{- end -}}
