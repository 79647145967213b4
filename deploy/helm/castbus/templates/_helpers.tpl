{{/*
Shared helpers. Every per-daemon template (templates/<daemon>/<kind>.yaml) is
one line calling a "castbus.<kind>" template of templates/_daemon.tpl with
(dict "root" $ "daemon" "<daemon>"); "castbus.daemon.init" adds to that dict:
  .meta  the daemon's row of "castbus.daemonTable"
  .v     its values: .Values.defaults with .Values.<key> merged over them
  .name  its resource name, <fullname>-<daemon>
*/}}

{{- define "castbus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "castbus.fullname" -}}
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

{{- define "castbus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; (dict "root" $ "component" "<daemon>"), component optional. */}}
{{- define "castbus.labels" -}}
helm.sh/chart: {{ include "castbus.chart" .root }}
{{ include "castbus.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: castbus
{{- end }}

{{- define "castbus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "castbus.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "castbus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "castbus.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
What the chart knows about each daemon, from the code: its values key, the
dependencies it checks for /readyz (services/<daemon>/main.c), how KEDA
scales it, and for Kafka consumers the topics it consumes with their
partition counts (proto/*.toml; tools/check-deploy compares them with
`castbus-busctl topics list`). The consumer group is the daemon's name.
Prometheus queries get @SELECTOR@ replaced by the daemon's series labels.
Daemons that clients reach from outside also have:
  listeners  name: values ports.<name>, the CASTBUS_* setting, the protocol,
             tls: true when it opens only with the TLS certificate (the
             containerPort and the publish Service port are named <name>;
             tools/check-rendered compares them with <name>_port of
             --help-json)
  tls        the settings that get the mounted certificate and key files
  workDir    the setting of its local scratch directory (an emptyDir)
  publicHost the setting that gets <key>.publicHost
  playbackBaseUrl  the setting that gets playback.baseUrl
  secrets    top-level secret blocks it reads besides the common ones (srt)
  publishSuffix  the name of its listeners' Service, <name>-<suffix>
             (default publish)
*/}}
{{- define "castbus.daemonTable" -}}
ingest:
  key: ingest
  deps: [kafka, postgres, storage]
  scaler: prometheus
  query: 'sum(castbus_ingest_publishers{@SELECTOR@})'
  listeners:
    rtmp: {env: CASTBUS_RTMP_PORT, protocol: TCP}
    rtmps: {env: CASTBUS_RTMPS_PORT, protocol: TCP, tls: true}
    srt: {env: CASTBUS_SRT_PORT, protocol: UDP}
  tls: {cert: CASTBUS_TLS_CERT, key: CASTBUS_TLS_KEY}
  workDir: CASTBUS_WORK_DIR
  publicHost: CASTBUS_PUBLIC_HOST
  playbackBaseUrl: CASTBUS_PLAYBACK_BASE_URL
  secrets: [srt]
transcode-worker:
  key: transcodeWorker
  deps: [kafka, storage]
  scaler: kafka
  topics:
    media.transcode.jobs: 24
    media.transcode.jobs.high: 24
packager:
  key: packager
  deps: [kafka, storage]
  listeners:
    origin: {env: CASTBUS_ORIGIN_PORT, protocol: TCP}
  publishSuffix: origin
  scaler: kafka
  topics:
    media.transcode.done: 12
purge-fanout:
  key: purgeFanout
  deps: [kafka, nats, redis]
  scaler: kafka
  topics:
    cdn.purges: 6
drm-license:
  key: drmLicense
  deps: [nats, postgres]
  scaler: prometheus
  query: 'sum(rate(castbus_nats_served_total{subject="drm.keys.get",@SELECTOR@}[2m]))'
entitlement:
  key: entitlement
  deps: [nats, postgres, redis]
  scaler: prometheus
  query: 'sum(rate(castbus_nats_served_total{subject="entitlement.check",@SELECTOR@}[2m]))'
analytics-sink:
  key: analyticsSink
  deps: [kafka, postgres]
  scaler: kafka
  topics:
    analytics.events: 12
    media.package.events: 6
sfu:
  key: sfu
  deps: [nats, redis]
  scaler: prometheus
  query: 'sum(castbus_sfu_sessions{@SELECTOR@})'
{{- end }}

{{/* The daemons in a fixed order. */}}
{{- define "castbus.daemonNames" -}}
ingest transcode-worker packager purge-fanout drm-license entitlement analytics-sink sfu
{{- end }}

{{/* "true" when some enabled daemon has dependency .dep: (dict "root" $ "dep" "postgres"). */}}
{{- define "castbus.anyUses" -}}
{{- $table := fromYaml (include "castbus.daemonTable" .root) }}
{{- $found := false }}
{{- range $d := splitList " " (include "castbus.daemonNames" .root) }}
{{- $meta := index $table $d }}
{{- if and (index $.root.Values $meta.key).enabled (has $.dep $meta.deps) }}
{{- $found = true }}
{{- end }}
{{- end }}
{{- if $found }}true{{ end }}
{{- end }}

{{/*
Deep merge of .src into .dst (a map, modified). Unlike mergeOverwrite it
lets false, 0 and "" override: a daemon may turn off what defaults turn on.
*/}}
{{- define "castbus.merge" -}}
{{- range $k, $sv := .src }}
{{- $dv := index $.dst $k }}
{{- if and (kindIs "map" $sv) (kindIs "map" $dv) }}
{{- include "castbus.merge" (dict "dst" $dv "src" $sv) }}
{{- else }}
{{- $_ := set $.dst $k $sv }}
{{- end }}
{{- end }}
{{- end }}

{{- define "castbus.daemon.init" -}}
{{- $meta := index (fromYaml (include "castbus.daemonTable" .root)) .daemon }}
{{- if not $meta }}
{{- fail (printf "castbus: unknown daemon %q" .daemon) }}
{{- end }}
{{- $v := deepCopy .root.Values.defaults }}
{{- include "castbus.merge" (dict "dst" $v "src" (deepCopy (index .root.Values $meta.key))) }}
{{- $_ := set . "meta" $meta }}
{{- $_ := set . "v" $v }}
{{- $_ := set . "name" (printf "%s-%s" (include "castbus.fullname" .root) .daemon | trunc 63 | trimSuffix "-") }}
{{- end }}

{{/* A number or string as a string; whole numbers without exponent (1e+06). */}}
{{- define "castbus.str" -}}
{{- if or (kindIs "float64" .) (kindIs "float32" .) }}
{{- . | int64 | toString }}
{{- else }}
{{- . | toString }}
{{- end }}
{{- end }}

{{/* The daemon's image reference; (context from castbus.daemon.init). */}}
{{- define "castbus.image" -}}
{{- $img := .v.image }}
{{- $repo := $img.repository }}
{{- with .root.Values.global.imageRegistry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}
{{- end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{- define "castbus.secretName" -}}
{{- printf "%s-secrets" (include "castbus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "castbus.tlsSecretName" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "castbus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "castbus.mediaClaimName" -}}
{{- if .Values.storage.persistence.existingClaim }}
{{- .Values.storage.persistence.existingClaim }}
{{- else }}
{{- printf "%s-media" (include "castbus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The Secrets holding the Kafka SASL user name and password: (list user password). */}}
{{- define "castbus.kafkaSaslSecrets" -}}
{{- $sasl := .Values.kafka.sasl }}
{{- $chart := include "castbus.secretName" . }}
{{- if $sasl.username }}{{ $chart }}{{ else }}{{ $sasl.existingSecret }}{{ end }} {{ default $chart $sasl.existingSecret }}
{{- end }}

{{- define "castbus.kafkaAuthName" -}}
{{- printf "%s-kafka" (include "castbus.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* librdkafka security.protocol from kafka.sasl and kafka.tls. */}}
{{- define "castbus.kafkaSecurityProtocol" -}}
{{- $k := .Values.kafka }}
{{- if and $k.sasl.enabled $k.tls.enabled }}sasl_ssl
{{- else if $k.sasl.enabled }}sasl_plaintext
{{- else if $k.tls.enabled }}ssl
{{- else }}plaintext
{{- end }}
{{- end }}

{{/* Where the Kafka CA certificate is mounted. */}}
{{- define "castbus.kafkaCaDir" -}}
/etc/castbus/kafka-ca
{{- end }}

{{/* Where the TLS certificate and key (tls.*) are mounted. */}}
{{- define "castbus.tlsDir" -}}
/etc/castbus/tls
{{- end }}

{{/* Where a daemon's work directory (an emptyDir) is mounted. */}}
{{- define "castbus.workDir" -}}
/var/lib/castbus/work
{{- end }}

{{/*
The daemon's publish listeners that are open, as YAML: name -> {port,
protocol, env}; (context from castbus.daemon.init). A port of 0 or null is
off, and a tls listener is off without tls.enabled.
*/}}
{{- define "castbus.listeners" -}}
{{- $out := dict }}
{{- range $name, $l := (.meta.listeners | default dict) }}
{{- $port := index $.v.ports $name }}
{{- if and $port (gt (int $port) 0) (or (not $l.tls) $.root.Values.tls.enabled) }}
{{- $_ := set $out $name (dict "port" (int $port) "protocol" $l.protocol "env" $l.env) }}
{{- end }}
{{- end }}
{{- if $out }}
{{- toYaml $out }}
{{- end }}
{{- end }}

{{/* "true" when the daemon mounts the TLS certificate: it has an open tls listener. */}}
{{- define "castbus.mountsTls" -}}
{{- $open := fromYaml (include "castbus.listeners" .) }}
{{- range $name, $l := (.meta.listeners | default dict) }}
{{- if and $l.tls (hasKey $open $name) }}true{{ end }}
{{- end }}
{{- end }}

{{/* The Secret and key holding the SRT passphrase, as "secret key", or nothing. */}}
{{- define "castbus.srtSecret" -}}
{{- $s := .Values.srt }}
{{- if $s.existingSecret }}
{{- printf "%s %s" $s.existingSecret $s.existingSecretKey }}
{{- else if $s.passphrase }}
{{- printf "%s %s" (include "castbus.secretName" .) $s.existingSecretKey }}
{{- end }}
{{- end }}

{{/*
The data of the chart's Secret as YAML (plain values, not yet base64), or
nothing when every secret comes from an existing Secret. Only what some
enabled daemon reads is included.
*/}}
{{- define "castbus.secretData" -}}
{{- $v := .Values }}
{{- $data := dict }}
{{- if not $v.apiKeys.existingSecret }}
{{- $_ := set $data $v.apiKeys.existingSecretKey $v.apiKeys.keys }}
{{- end }}
{{- if and (include "castbus.anyUses" (dict "root" . "dep" "postgres")) (not $v.postgres.existingSecret) }}
{{- $_ := set $data $v.postgres.existingSecretKey $v.postgres.dsn }}
{{- end }}
{{- if and (include "castbus.anyUses" (dict "root" . "dep" "redis")) (not $v.redis.existingSecret) }}
{{- $_ := set $data $v.redis.existingSecretKey $v.redis.url }}
{{- end }}
{{- if and (include "castbus.anyUses" (dict "root" . "dep" "kafka")) $v.kafka.sasl.enabled }}
{{- if $v.kafka.sasl.username }}
{{- $_ := set $data $v.kafka.sasl.usernameKey $v.kafka.sasl.username }}
{{- end }}
{{- if not $v.kafka.sasl.existingSecret }}
{{- $_ := set $data $v.kafka.sasl.passwordKey $v.kafka.sasl.password }}
{{- end }}
{{- end }}
{{- if and (include "castbus.anyUses" (dict "root" . "dep" "nats")) (not $v.nats.auth.existingSecret) }}
{{- with $v.nats.auth.user }}{{ $_ := set $data $v.nats.auth.userKey . }}{{ end }}
{{- with $v.nats.auth.password }}{{ $_ := set $data $v.nats.auth.passwordKey . }}{{ end }}
{{- with $v.nats.auth.token }}{{ $_ := set $data $v.nats.auth.tokenKey . }}{{ end }}
{{- end }}
{{- if and $v.drmLicense.enabled (not $v.drm.existingSecret) }}
{{- $_ := set $data $v.drm.existingSecretKey $v.drm.contentKeyEncryptionKey }}
{{- end }}
{{- if and $v.ingest.enabled $v.ingest.ports.srt (not $v.srt.existingSecret) $v.srt.passphrase }}
{{- $_ := set $data $v.srt.existingSecretKey $v.srt.passphrase }}
{{- end }}
{{- if $data }}
{{- toYaml $data }}
{{- end }}
{{- end }}

{{/* One env entry from a Secret: (dict "env" NAME "secret" S "key" K "optional" bool). */}}
{{- define "castbus.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* Checks of the global values; rendered once by templates/validate.yaml. */}}
{{- define "castbus.validate" -}}
{{- $v := .Values }}
{{- if hasPrefix "file://" $v.storage.url }}
{{- $path := trimPrefix "file://" $v.storage.url }}
{{- $mount := trimSuffix "/" $v.storage.mountPath }}
{{- if not (or (eq $path $mount) (hasPrefix (printf "%s/" $mount) $path)) }}
{{- fail (printf "storage.url %s is not inside storage.mountPath %s" $v.storage.url $v.storage.mountPath) }}
{{- end }}
{{- end }}
{{- if and $v.kafka.sasl.enabled (not $v.kafka.sasl.existingSecret) (not (and $v.kafka.sasl.username $v.kafka.sasl.password)) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.username and kafka.sasl.password, or kafka.sasl.existingSecret" }}
{{- end }}
{{- if and $v.kafka.sasl.existingSecret $v.kafka.sasl.password }}
{{- fail "kafka.sasl: the password comes from existingSecret; leave kafka.sasl.password empty" }}
{{- end }}
{{- if and $v.kafka.tls.caSecret (not $v.kafka.tls.enabled) }}
{{- fail "kafka.tls.caSecret is set but kafka.tls.enabled is false" }}
{{- end }}
{{- if and $v.nats.auth.password (not $v.nats.auth.user) }}
{{- fail "nats.auth.password needs nats.auth.user" }}
{{- end }}
{{- if and $v.nats.auth.token $v.nats.auth.user }}
{{- fail "nats.auth: set a user and password, or a token, not both" }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) (not (and $v.tls.cert $v.tls.key)) }}
{{- fail "tls.enabled needs tls.cert and tls.key, or tls.existingSecret" }}
{{- end }}
{{- if and $v.srt.existingSecret $v.srt.passphrase }}
{{- fail "srt: the passphrase comes from existingSecret; leave srt.passphrase empty" }}
{{- end }}
{{- end }}
