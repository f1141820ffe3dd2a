{{/* Labels on every object (selectors use the app label alone). */}}
{{- define "meshllm.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: meshllm
{{- end }}

{{- define "meshllm.tag" -}}
{{ .Values.images.tag | default .Chart.AppVersion }}
{{- end }}

{{/* <registry>/picker-svc:<tag>, as make images pushes it. */}}
{{- define "meshllm.pickerImage" -}}
{{ .Values.images.picker.repository | default (printf "%s/picker-svc" .Values.images.registry) }}:{{ .Values.images.picker.tag | default (include "meshllm.tag" .) }}
{{- end }}

{{/* oci://<registry>/meshllm-wasm:<tag>, as make images pushes it. */}}
{{- define "meshllm.wasmURL" -}}
oci://{{ .Values.images.wasm.repository | default (printf "%s/meshllm-wasm" .Values.images.registry) }}:{{ .Values.images.wasm.tag | default (include "meshllm.tag" .) }}
{{- end }}

{{/* Istio's cluster name of the mesh path's picker Service, and its FQDN. */}}
{{- define "meshllm.pickerFQDN" -}}
{{ .Values.mesh.picker.name }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end }}
{{- define "meshllm.pickerCluster" -}}
outbound|9002||{{ include "meshllm.pickerFQDN" . }}
{{- end }}

{{/* What picker-svc reads and writes in its namespace (both paths). */}}
{{- define "meshllm.pickerRules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["inference.networking.x-k8s.io", "inference.networking.k8s.io"]
  resources: ["inferencepools", "inferencemodels"]
  verbs: ["get", "list", "watch"]
# InferenceObjective / InferenceModelRewrite, and their status (Accepted).
- apiGroups: ["inference.networking.x-k8s.io", "llm-d.ai"]
  resources: ["inferenceobjectives", "inferencemodelrewrites"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["inference.networking.x-k8s.io", "llm-d.ai"]
  resources: ["inferenceobjectives/status", "inferencemodelrewrites/status"]
  verbs: ["get", "update", "patch"]
{{- end }}

{{/* Whether the pickers run as a replica group. */}}
{{- define "meshllm.replicated" -}}
{{- if gt (int .Values.picker.replicas) 1 }}true{{ end }}
{{- end }}

{{/* The pod's scheduling and security settings shared by both pickers
(dict "root" . "name" <the picker's app label>). */}}
{{- define "meshllm.pickerPodSettings" -}}
{{- $root := .root }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- if include "meshllm.replicated" $root }}
topologySpreadConstraints:
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      app: {{ .name }}
{{- end }}
{{- with $root.Values.picker.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.picker.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.picker.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The container settings shared by both pickers. */}}
{{- define "meshllm.pickerContainerSettings" -}}
image: {{ include "meshllm.pickerImage" . }}
imagePullPolicy: {{ .Values.images.pullPolicy }}
env:
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if include "meshllm.replicated" . }}
- name: PICKER_REPLICA_ADVERTISE
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end }}
# /healthz: the process serves. /readyz: at least one pod has fresh metrics
# and, as a replica, it has its peers' state.
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 2
  failureThreshold: 3
resources:
  {{- toYaml .Values.picker.resources | nindent 2 }}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end }}

{{/* The Deployment spec fields shared by both pickers. */}}
{{- define "meshllm.pickerDeploymentSettings" -}}
replicas: {{ .Values.picker.replicas }}
{{- with .Values.picker.strategy }}
strategy:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The vLLM pods' labels, and the ingress gateway pods'. */}}
{{- define "meshllm.poolSelector" -}}
{{ toYaml (.Values.pool.selector | default (dict "app" .Values.pool.name)) }}
{{- end }}
{{- define "meshllm.ingressSelector" -}}
{{ toYaml (.Values.mesh.ingressGateway.selector | default (dict "istio" "ingressgateway")) }}
{{- end }}


{{/* A replica's gossip flags (dict "root" . "name" <the picker's app label>). */}}
{{- define "meshllm.replicaArgs" -}}
{{- if include "meshllm.replicated" .root }}
- --replica-listen=:{{ .root.Values.picker.gossipPort }}
- --replica-peers={{ .name }}-gossip:{{ .root.Values.picker.gossipPort }}
{{- if .root.Values.picker.gossipSecret }}
- --replica-secret-key-file=/etc/picker-gossip/key
{{- end }}
{{- end }}
{{- end }}

{{/* The gossip key's mount and volume (replicas with picker.gossipSecret). */}}
{{- define "meshllm.gossipKeyMount" -}}
{{- if and (include "meshllm.replicated" .) .Values.picker.gossipSecret }}
- name: gossip-key
  mountPath: /etc/picker-gossip
  readOnly: true
{{- end }}
{{- end }}
{{- define "meshllm.gossipKeyVolume" -}}
{{- if and (include "meshllm.replicated" .) .Values.picker.gossipSecret }}
- name: gossip-key
  secret:
    secretName: {{ .Values.picker.gossipSecret }}
{{- end }}
{{- end }}

{{/* A replica's gossip ports. */}}
{{- define "meshllm.replicaPorts" -}}
{{- if include "meshllm.replicated" . }}
- name: tcp-gossip
  containerPort: {{ .Values.picker.gossipPort }}
  protocol: TCP
- name: udp-gossip
  containerPort: {{ .Values.picker.gossipPort }}
  protocol: UDP
{{- end }}
{{- end }}

{{/* The replica group's PodDisruptionBudget and headless gossip Service
(dict "root" . "name" <the picker's app label>). */}}
{{- define "meshllm.replicaObjects" -}}
{{- $root := .root }}
{{- if include "meshllm.replicated" $root }}
---
# Voluntary disruptions take one replica at a time.
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    app: {{ .name }}
    {{- include "meshllm.labels" $root | nindent 4 }}
spec:
  minAvailable: {{ $root.Values.picker.minAvailable | default (sub (int $root.Values.picker.replicas) 1) }}
  selector:
    matchLabels:
      app: {{ .name }}
---
# The replicas find each other here: every picker pod, ready or not.
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}-gossip
  namespace: {{ $root.Release.Namespace }}
  labels:
    app: {{ .name }}
    {{- include "meshllm.labels" $root | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    app: {{ .name }}
  ports:
  - name: tcp-gossip
    port: {{ $root.Values.picker.gossipPort }}
    targetPort: tcp-gossip
    protocol: TCP
  - name: udp-gossip
    port: {{ $root.Values.picker.gossipPort }}
    targetPort: udp-gossip
    protocol: UDP
{{- end }}
{{- end }}
