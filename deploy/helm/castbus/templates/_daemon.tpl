{{/*
The per-daemon objects. Each is called as
  {{ include "castbus.<kind>" (dict "root" $ "daemon" "<daemon>") }}
from templates/<daemon>/<kind>.yaml and renders nothing when the daemon is
disabled (or the object is switched off).
*/}}

{{/*
Non-secret settings of a daemon, as the YAML body of its ConfigMap. The keys
are the daemon's own CASTBUS_* names (docs/config.md); the chart sets the
port, the shutdown grace and the dependencies, and .v.env adds the rest.
*/}}
{{- define "castbus.configData" -}}
{{- $root := .root }}
{{- $deps := .meta.deps }}
{{- $data := dict }}
{{- $_ := set $data "CASTBUS_HTTP_PORT" (include "castbus.str" .v.ports.http) }}
{{- $_ := set $data "CASTBUS_SHUTDOWN_GRACE" (printf "%ss" (include "castbus.str" .v.shutdown.graceSeconds)) }}
{{- if has "kafka" $deps }}
{{- $k := $root.Values.kafka }}
{{- $_ := set $data "CASTBUS_KAFKA_BROKERS" $k.brokers }}
{{- $_ := set $data "CASTBUS_KAFKA_SECURITY_PROTOCOL" (include "castbus.kafkaSecurityProtocol" $root) }}
{{- if $k.sasl.enabled }}
{{- $_ := set $data "CASTBUS_KAFKA_SASL_MECHANISM" $k.sasl.mechanism }}
{{- end }}
{{- if and $k.tls.enabled $k.tls.caSecret }}
{{- $_ := set $data "CASTBUS_KAFKA_SSL_CA_LOCATION" (printf "%s/ca.crt" (include "castbus.kafkaCaDir" $root)) }}
{{- end }}
{{- end }}
{{- if has "nats" $deps }}
{{- $_ := set $data "CASTBUS_NATS_URL" $root.Values.nats.url }}
{{- end }}
{{- if has "storage" $deps }}
{{- $_ := set $data "CASTBUS_STORAGE_URL" $root.Values.storage.url }}
{{- end }}
{{- /* publish listeners: the open ones get their port, the others 0 (off) */}}
{{- $open := fromYaml (include "castbus.listeners" .) }}
{{- range $name, $l := (.meta.listeners | default dict) }}
{{- $_ := set $data $l.env (toString (dig $name "port" 0 $open)) }}
{{- end }}
{{- if include "castbus.mountsTls" . }}
{{- $dir := include "castbus.tlsDir" $root }}
{{- $_ := set $data .meta.tls.cert (printf "%s/tls.crt" $dir) }}
{{- $_ := set $data .meta.tls.key (printf "%s/tls.key" $dir) }}
{{- end }}
{{- with .meta.workDir }}
{{- $_ := set $data . (include "castbus.workDir" $root) }}
{{- end }}
{{- if and .meta.publicHost .v.publicHost }}
{{- $_ := set $data .meta.publicHost .v.publicHost }}
{{- end }}
{{- if and .meta.playbackBaseUrl $root.Values.playback.baseUrl }}
{{- $_ := set $data .meta.playbackBaseUrl $root.Values.playback.baseUrl }}
{{- end }}
{{- range $key, $val := .v.env }}
{{- if hasKey $data $key }}
{{- fail (printf "%s.env.%s: the chart sets %s itself (ports, shutdown, TLS, work dir, public URLs, kafka, nats and storage values)" $.meta.key $key $key) }}
{{- end }}
{{- $_ := set $data $key (include "castbus.str" $val) }}
{{- end }}
{{- range $key := keys $data | sortAlpha }}
{{ $key }}: {{ index $data $key | quote }}
{{- end }}
{{- end }}

{{/* Env entries of a daemon taken from Secrets. */}}
{{- define "castbus.secretEnvs" -}}
{{- $v := .root.Values }}
{{- $chart := include "castbus.secretName" .root }}
{{- $deps := .meta.deps }}
{{- include "castbus.secretEnv" (dict "env" "CASTBUS_API_KEYS" "secret" (default $chart $v.apiKeys.existingSecret) "key" $v.apiKeys.existingSecretKey) }}
{{- if has "postgres" $deps }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_PG_DSN" "secret" (default $chart $v.postgres.existingSecret) "key" $v.postgres.existingSecretKey) }}
{{- end }}
{{- if has "redis" $deps }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_REDIS_URL" "secret" (default $chart $v.redis.existingSecret) "key" $v.redis.existingSecretKey) }}
{{- end }}
{{- if and (has "kafka" $deps) $v.kafka.sasl.enabled }}
{{- $s := splitList " " (include "castbus.kafkaSaslSecrets" .root) }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_KAFKA_SASL_USERNAME" "secret" (index $s 0) "key" $v.kafka.sasl.usernameKey) }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_KAFKA_SASL_PASSWORD" "secret" (index $s 1) "key" $v.kafka.sasl.passwordKey) }}
{{- end }}
{{- if has "srt" (.meta.secrets | default list) }}
{{- $open := fromYaml (include "castbus.listeners" .) }}
{{- $s := include "castbus.srtSecret" .root }}
{{- if and (hasKey $open "srt") $s }}
{{- $s := splitList " " $s }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_SRT_PASSPHRASE" "secret" (index $s 0) "key" (index $s 1)) }}
{{- end }}
{{- end }}
{{- if has "nats" $deps }}
{{- $a := $v.nats.auth }}
{{- if $a.existingSecret }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_NATS_USER" "secret" $a.existingSecret "key" $a.userKey "optional" true) }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_NATS_PASSWORD" "secret" $a.existingSecret "key" $a.passwordKey "optional" true) }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_NATS_TOKEN" "secret" $a.existingSecret "key" $a.tokenKey "optional" true) }}
{{- else }}
{{- if $a.user }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_NATS_USER" "secret" $chart "key" $a.userKey) }}
{{- end }}
{{- if $a.password }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_NATS_PASSWORD" "secret" $chart "key" $a.passwordKey) }}
{{- end }}
{{- if $a.token }}
{{ include "castbus.secretEnv" (dict "env" "CASTBUS_NATS_TOKEN" "secret" $chart "key" $a.tokenKey) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "castbus.configmap" -}}
{{- include "castbus.daemon.init" . }}
{{- if .v.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "castbus.labels" (dict "root" .root "component" .daemon) | nindent 4 }}
data:
  {{- include "castbus.configData" . | trim | nindent 2 }}
{{- end }}
{{- end }}

{{- define "castbus.service" -}}
{{- include "castbus.daemon.init" . }}
{{- if .v.enabled }}
{{- $svc := .v.service }}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "castbus.labels" (dict "root" .root "component" .daemon) | nindent 4 }}
    {{- with $svc.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $svc.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $svc.type }}
  selector:
    {{- include "castbus.selectorLabels" (dict "root" .root "component" .daemon) | nindent 4 }}
  ports:
    - name: http
      port: {{ default .v.ports.http $svc.port | int }}
      targetPort: http
      protocol: TCP
      {{- if and $svc.nodePort (has $svc.type (list "NodePort" "LoadBalancer")) }}
      nodePort: {{ $svc.nodePort | int }}
      {{- end }}
{{- end }}
{{- end }}

{{/*
The publish Service of a daemon with listeners: <name>-publish for ingest's
encoders from outside, <name>-origin for the packager's CDN edges, next to
the admin Service. Its ports are the
container ports (the publish URLs ingest hands out carry them). Labelled
castbus.io/service: publish, which the ServiceMonitors leave out.
*/}}
{{- define "castbus.publishService" -}}
{{- include "castbus.daemon.init" . }}
{{- $ps := .v.publishService }}
{{- $open := fromYaml (include "castbus.listeners" .) }}
{{- if and .v.enabled .meta.listeners $ps $ps.enabled $open }}
{{- $external := has $ps.type (list "NodePort" "LoadBalancer") }}
apiVersion: v1
kind: Service
metadata:
  name: {{ printf "%s-%s" .name (.meta.publishSuffix | default "publish") | trunc 63 | trimSuffix "-" }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "castbus.labels" (dict "root" .root "component" .daemon) | nindent 4 }}
    castbus.io/service: publish
    {{- with $ps.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $ps.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $ps.type }}
  {{- if $external }}
  externalTrafficPolicy: {{ $ps.externalTrafficPolicy }}
  {{- end }}
  {{- if eq $ps.type "LoadBalancer" }}
  {{- with $ps.loadBalancerClass }}
  loadBalancerClass: {{ . }}
  {{- end }}
  {{- with $ps.loadBalancerIP }}
  loadBalancerIP: {{ . }}
  {{- end }}
  {{- with $ps.loadBalancerSourceRanges }}
  loadBalancerSourceRanges:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  selector:
    {{- include "castbus.selectorLabels" (dict "root" .root "component" .daemon) | nindent 4 }}
  ports:
    {{- range $name, $l := $open }}
    - name: {{ $name }}
      port: {{ $l.port }}
      targetPort: {{ $name }}
      protocol: {{ $l.protocol }}
      {{- $nodePort := index ($ps.nodePorts | default dict) $name }}
      {{- if and $external $nodePort }}
      nodePort: {{ $nodePort | int }}
      {{- end }}
    {{- end }}
{{- end }}
{{- end }}

{{- define "castbus.deployment" -}}
{{- include "castbus.daemon.init" . }}
{{- if .v.enabled }}
{{- $v := .v }}
{{- $root := .root }}
{{- $deps := .meta.deps }}
{{- $sd := $v.shutdown }}
{{- if le (int $sd.terminationGracePeriodSeconds) (add (int $sd.preStopSleepSeconds) (int $sd.graceSeconds)) }}
{{- fail (printf "%s.shutdown: terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + graceSeconds (%d + %d), or Kubernetes kills the daemon mid-drain" .meta.key (int $sd.terminationGracePeriodSeconds) (int $sd.preStopSleepSeconds) (int $sd.graceSeconds)) }}
{{- end }}
{{- $kafkaCa := and (has "kafka" $deps) $root.Values.kafka.tls.enabled $root.Values.kafka.tls.caSecret }}
{{- $listeners := fromYaml (include "castbus.listeners" .) }}
{{- $tls := include "castbus.mountsTls" . }}
{{- $taken := dict (printf "%d/TCP" (int $v.ports.http)) "http" }}
{{- range $name, $l := $listeners }}
{{- $port := printf "%d/%s" (int $l.port) $l.protocol }}
{{- with index $taken $port }}
{{- fail (printf "%s.ports: %s and %s both use %s" $.meta.key . $name $port) }}
{{- end }}
{{- $_ := set $taken $port $name }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "castbus.labels" (dict "root" $root "component" .daemon) | nindent 4 }}
spec:
  {{- if not $v.keda.enabled }}
  replicas: {{ $v.replicas | int }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "castbus.selectorLabels" (dict "root" $root "component" .daemon) | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "castbus.labels" (dict "root" $root "component" .daemon) | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "castbus.configData" . | sha256sum }}
        checksum/secret: {{ include "castbus.secretData" $root | sha256sum }}
        {{- if and $tls (not $root.Values.tls.existingSecret) }}
        # the daemon reads the certificate at start: roll when it changes
        checksum/tls: {{ printf "%s%s" $root.Values.tls.cert $root.Values.tls.key | sha256sum }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "castbus.serviceAccountName" $root }}
      # The daemons never call the Kubernetes API.
      automountServiceAccountToken: false
      # Service links would add CASTBUS_<SERVICE>_* variables to the environment.
      enableServiceLinks: false
      {{- with $root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $sd.terminationGracePeriodSeconds | int }}
      containers:
        - name: {{ .daemon }}
          image: {{ include "castbus.image" . }}
          imagePullPolicy: {{ $v.imagePullPolicy }}
          envFrom:
            - configMapRef:
                name: {{ .name }}
          env:
            {{- include "castbus.secretEnvs" . | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ $v.ports.http | int }}
              protocol: TCP
            {{- range $name, $l := $listeners }}
            - name: {{ $name }}
              containerPort: {{ $l.port }}
              protocol: {{ $l.protocol }}
            {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $v.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $v.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            {{- toYaml $v.probes.readiness | nindent 12 }}
          {{- if gt (int $sd.preStopSleepSeconds) 0 }}
          lifecycle:
            # Keep serving while endpoints and load balancers drop the pod;
            # SIGTERM (and the daemon's drain) follows.
            preStop:
              sleep:
                seconds: {{ $sd.preStopSleepSeconds | int }}
          {{- end }}
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if has "storage" $deps }}
            - name: media
              mountPath: {{ $root.Values.storage.mountPath }}
            {{- end }}
            {{- if $kafkaCa }}
            - name: kafka-ca
              mountPath: {{ include "castbus.kafkaCaDir" $root }}
              readOnly: true
            {{- end }}
            {{- if .meta.workDir }}
            - name: work
              mountPath: {{ include "castbus.workDir" $root }}
            {{- end }}
            {{- if $tls }}
            - name: tls
              mountPath: {{ include "castbus.tlsDir" $root }}
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 256Mi
        {{- if .meta.workDir }}
        {{- $wd := $v.workDir | default dict }}
        - name: work
          emptyDir:
            {{- if not (or $wd.medium $wd.sizeLimit) }} {}{{ end }}
            {{- with $wd.medium }}
            medium: {{ . }}
            {{- end }}
            {{- with $wd.sizeLimit }}
            sizeLimit: {{ . }}
            {{- end }}
        {{- end }}
        {{- if $tls }}
        - name: tls
          secret:
            secretName: {{ include "castbus.tlsSecretName" $root }}
            # readable by the pod's fsGroup only
            defaultMode: 0440
            items:
              - key: tls.crt
                path: tls.crt
              - key: tls.key
                path: tls.key
        {{- end }}
        {{- if has "storage" $deps }}
        - name: media
          {{- if $root.Values.storage.persistence.enabled }}
          persistentVolumeClaim:
            claimName: {{ include "castbus.mediaClaimName" $root }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        {{- end }}
        {{- if $kafkaCa }}
        - name: kafka-ca
          secret:
            secretName: {{ $root.Values.kafka.tls.caSecret }}
            items:
              - key: {{ $root.Values.kafka.tls.caKey }}
                path: ca.crt
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- /* a constraint without labelSelector counts this daemon's pods */}}
        {{- $spread := list }}
        {{- range . }}
        {{- $c := deepCopy . }}
        {{- if not (hasKey $c "labelSelector") }}
        {{- $_ := set $c "labelSelector" (dict "matchLabels" (fromYaml (include "castbus.selectorLabels" (dict "root" $root "component" $.daemon)))) }}
        {{- end }}
        {{- $spread = append $spread $c }}
        {{- end }}
        {{- toYaml $spread | nindent 8 }}
      {{- end }}
{{- end }}
{{- end }}

{{- define "castbus.pdb" -}}
{{- include "castbus.daemon.init" . }}
{{- $p := .v.podDisruptionBudget }}
{{- if and .v.enabled $p.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "castbus.labels" (dict "root" .root "component" .daemon) | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" $p.minAvailable) }}
  minAvailable: {{ include "castbus.intOrPercent" $p.minAvailable }}
  {{- else if not (kindIs "invalid" $p.maxUnavailable) }}
  maxUnavailable: {{ include "castbus.intOrPercent" $p.maxUnavailable }}
  {{- else }}
  maxUnavailable: 1
  {{- end }}
  selector:
    matchLabels:
      {{- include "castbus.selectorLabels" (dict "root" .root "component" .daemon) | nindent 6 }}
{{- end }}
{{- end }}

{{- define "castbus.intOrPercent" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ . | int }}{{ end }}
{{- end }}

{{- define "castbus.scaledobject" -}}
{{- include "castbus.daemon.init" . }}
{{- $k := .v.keda }}
{{- if and .v.enabled $k.enabled }}
{{- $root := .root }}
{{- $meta := .meta }}
{{- if gt (int $k.minReplicaCount) (int $k.maxReplicaCount) }}
{{- fail (printf "%s.keda: minReplicaCount (%d) is above maxReplicaCount (%d)" $meta.key (int $k.minReplicaCount) (int $k.maxReplicaCount)) }}
{{- end }}
{{- if eq $meta.scaler "kafka" }}
{{- $most := 0 }}
{{- range $topic, $n := $meta.topics }}
{{- $most = max $most (int $n) }}
{{- end }}
{{- if gt (int $k.maxReplicaCount) $most }}
{{- fail (printf "%s.keda.maxReplicaCount (%d) exceeds the partitions of %s (%d): a consumer group has at most one busy member per partition" $meta.key (int $k.maxReplicaCount) (keys $meta.topics | sortAlpha | join ", ") $most) }}
{{- end }}
{{- end }}
{{- $query := default $meta.query $k.query }}
{{- if and $meta.listeners (lt (int $k.minReplicaCount) 1) }}
{{- fail (printf "%s.keda.minReplicaCount must be at least 1: encoders need a running %s pod to connect to, and publishers are what it scales on" $meta.key .daemon) }}
{{- end }}
{{- if and (eq $meta.scaler "prometheus") (not $query) }}
{{- fail (printf "%s.keda.query: %s has no built-in load metric yet; give a PromQL query to scale on" $meta.key .daemon) }}
{{- end }}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "castbus.labels" (dict "root" $root "component" .daemon) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicaCount: {{ $k.minReplicaCount | int }}
  maxReplicaCount: {{ $k.maxReplicaCount | int }}
  pollingInterval: {{ $k.pollingInterval | int }}
  cooldownPeriod: {{ $k.cooldownPeriod | int }}
  {{- with $k.behavior }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        {{- toYaml . | nindent 8 }}
  {{- end }}
  triggers:
    {{- if eq $meta.scaler "kafka" }}
    {{- $kafka := $root.Values.kafka }}
    {{- range $topic, $n := $meta.topics }}
    - type: kafka
      name: {{ $topic | replace "." "-" }}
      metadata:
        bootstrapServers: {{ $kafka.brokers | quote }}
        consumerGroup: {{ $.daemon }}
        topic: {{ $topic }}
        lagThreshold: {{ include "castbus.str" $k.lagThreshold | quote }}
        activationLagThreshold: {{ include "castbus.str" $k.activationLagThreshold | quote }}
        # The daemons start a new group at the oldest message.
        offsetResetPolicy: earliest
        {{- if $kafka.sasl.enabled }}
        sasl: {{ index (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512") $kafka.sasl.mechanism }}
        {{- end }}
        {{- if $kafka.tls.enabled }}
        tls: enable
        {{- end }}
      {{- if or $kafka.sasl.enabled (and $kafka.tls.enabled $kafka.tls.caSecret) }}
      authenticationRef:
        name: {{ include "castbus.kafkaAuthName" $root }}
      {{- end }}
    {{- end }}
    {{- else }}
    {{- $sel := printf "namespace=%q,service=%q" $root.Release.Namespace .name }}
    - type: prometheus
      name: {{ .daemon }}-load
      metadata:
        serverAddress: {{ default $root.Values.keda.prometheus.serverAddress $k.serverAddress | quote }}
        query: {{ $query | replace "@SELECTOR@" $sel | quote }}
        threshold: {{ include "castbus.str" $k.threshold | quote }}
        activationThreshold: {{ include "castbus.str" $k.activationThreshold | quote }}
    {{- end }}
{{- end }}
{{- end }}

{{- define "castbus.networkpolicy" -}}
{{- include "castbus.daemon.init" . }}
{{- $np := .v.networkPolicy }}
{{- $root := .root }}
{{- if and .v.enabled $root.Values.networkPolicy.enabled $np.enabled }}
{{- $g := $root.Values.networkPolicy }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "castbus.labels" (dict "root" $root "component" .daemon) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "castbus.selectorLabels" (dict "root" $root "component" .daemon) | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  ingress:
    # The admin/REST port: API, probes, Prometheus scrapes.
    - ports:
        - port: {{ .v.ports.http | int }}
          protocol: TCP
      {{- with $np.ingressFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- $open := fromYaml (include "castbus.listeners" .) }}
    {{- if $open }}
    # The publish ports: encoders (from publishFrom peers, or anywhere).
    - ports:
        {{- range $name, $l := $open }}
        - port: {{ $l.port }}
          protocol: {{ $l.protocol }}
        {{- end }}
      {{- with $np.publishFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
  egress:
    - ports:
        {{- range $g.dnsPorts }}
        - port: {{ . | int }}
          protocol: UDP
        - port: {{ . | int }}
          protocol: TCP
        {{- end }}
    {{- range $dep := .meta.deps }}
    {{- if ne $dep "storage" }}
    {{- $e := index $g.egress $dep }}
    # {{ $dep }}
    - ports:
        {{- range $e.ports }}
        - port: {{ . | int }}
          protocol: TCP
        {{- end }}
      {{- with $e.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- end }}
    {{- with $np.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end }}

{{- define "castbus.servicemonitor" -}}
{{- include "castbus.daemon.init" . }}
{{- $sm := .v.serviceMonitor }}
{{- $g := .root.Values.metrics.serviceMonitor }}
{{- if and .v.enabled $g.enabled $sm.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "castbus.labels" (dict "root" .root "component" .daemon) | nindent 4 }}
    {{- with $g.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "castbus.selectorLabels" (dict "root" .root "component" .daemon) | nindent 6 }}
    # the admin Service only, not a publish Service (no metrics there)
    matchExpressions:
      - key: castbus.io/service
        operator: DoesNotExist
  endpoints:
    - port: http
      path: /metrics
      interval: {{ default $g.interval $sm.interval }}
      scrapeTimeout: {{ default $g.scrapeTimeout $sm.scrapeTimeout }}
{{- end }}
{{- end }}
