{{/*
Names. They use only .Values and .Release, so an app chart that depends on this one can render the sidecar helpers
with the subchart's values (helm/examples/app-with-guardrail) and get the same names as the subchart's own objects.
*/}}
{{- define "guardrail-sidecar.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "guardrail-sidecar" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-guardrail-sidecar" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "guardrail-sidecar.selectorLabels" -}}
app.kubernetes.io/name: guardrail-sidecar
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "guardrail-sidecar.labels" -}}
{{ include "guardrail-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: guardrail
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The review page's own name label: the guardrail's selectors (Service, PDB, NetworkPolicy, monitors) never pick it. */}}
{{- define "guardrail-sidecar.reviewWebSelectorLabels" -}}
app.kubernetes.io/name: guardrail-sidecar-review
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "guardrail-sidecar.reviewWebLabels" -}}
{{ include "guardrail-sidecar.reviewWebSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: review-web
app.kubernetes.io/part-of: guardrail-sidecar
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "guardrail-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "guardrail-sidecar.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "guardrail-sidecar.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret holding the review store URL: an existing one, or ours when review.url is given. */}}
{{- define "guardrail-sidecar.reviewSecret" -}}
{{- if .Values.review.existingSecret -}}
{{- .Values.review.existingSecret -}}
{{- else if .Values.review.url -}}
{{- printf "%s-review" (include "guardrail-sidecar.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* server.grace_period_s rounded up, plus the margin: the pod's terminationGracePeriodSeconds. */}}
{{- define "guardrail-sidecar.terminationGrace" -}}
{{- $grace := dig "server" "grace_period_s" 10 (.Values.config | default dict) -}}
{{- add (int (ceil $grace)) (int .Values.terminationGraceMarginSeconds) -}}
{{- end -}}

{{/* The config's server section as the chart has it (empty when config.server is unset). */}}
{{- define "guardrail-sidecar.serverConfig" -}}
{{- toYaml (get (.Values.config | default dict) "server" | default dict) -}}
{{- end -}}

{{/*
gRPC's bind address: config.server.host when set, else 0.0.0.0 standalone (the Service reaches the pod IP) and
127.0.0.1 sidecar (only the containers of the app's pod can call it).
*/}}
{{- define "guardrail-sidecar.host" -}}
{{- $server := include "guardrail-sidecar.serverConfig" . | fromYaml -}}
{{- get $server "host" | default (ternary "0.0.0.0" "127.0.0.1" (eq .Values.mode "standalone")) -}}
{{- end -}}

{{/*
The plaintext health-only port, or nothing. ports.health when set; else 8086 when the kubelet's gRPC probes (plaintext,
to the pod IP) cannot reach the gRPC port: TLS on (tls.enabled or config.server.tls), or gRPC bound to an address other
than a wildcard (127.0.0.1, the sidecar default).
*/}}
{{- define "guardrail-sidecar.healthPort" -}}
{{- $server := include "guardrail-sidecar.serverConfig" . | fromYaml -}}
{{- $wildcard := has (include "guardrail-sidecar.host" .) (list "0.0.0.0" "::" "[::]") -}}
{{- if .Values.ports.health -}}
{{- .Values.ports.health | int -}}
{{- else if or .Values.tls.enabled (get $server "tls") (not $wildcard) -}}
8086
{{- end -}}
{{- end -}}

{{- define "guardrail-sidecar.tlsDir" -}}/etc/guardrail-tls{{- end -}}
{{- define "guardrail-sidecar.clientCADir" -}}/etc/guardrail-client-ca{{- end -}}
{{- define "guardrail-sidecar.authDir" -}}/etc/guardrail-auth{{- end -}}

{{/* The Secret with the client CA (mTLS): tls.clientCASecretName, default the server certificate's Secret. */}}
{{- define "guardrail-sidecar.clientCASecret" -}}
{{- if .Values.tls.clientCAKey -}}
{{- .Values.tls.clientCASecretName | default .Values.tls.secretName -}}
{{- end -}}
{{- end -}}

{{/* "true" when the client CA comes from a Secret of its own (a second volume), else nothing. */}}
{{- define "guardrail-sidecar.separateClientCA" -}}
{{- $ca := include "guardrail-sidecar.clientCASecret" . -}}
{{- if and $ca (ne $ca .Values.tls.secretName) }}true{{ end -}}
{{- end -}}

{{/*
The config file: .Values.config with the server's bind settings from .Values.ports, TLS and auth pointing at the
mounted Secrets' files, and data under the volume.
*/}}
{{- define "guardrail-sidecar.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $given := deepCopy (get $cfg "server" | default dict) -}}
{{- $server := dict "host" (include "guardrail-sidecar.host" .) "port" (int .Values.ports.grpc) "metrics_port" (int .Values.ports.metrics) -}}
{{- /* Prometheus and the kubelet reach the pod IP, whatever gRPC binds */ -}}
{{- $_ := set $server "metrics_host" (get $given "metrics_host" | default "0.0.0.0") -}}
{{- with (include "guardrail-sidecar.healthPort" .) }}
{{- $_ := set $server "health_port" (int .) -}}
{{- $_ := set $server "health_host" (get $given "health_host" | default "0.0.0.0") -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- if not .Values.tls.secretName -}}
{{- fail "tls.enabled: set tls.secretName, the Secret holding the server certificate and key (cert-manager's kubernetes.io/tls Secret fits)" -}}
{{- end -}}
{{- $tls := deepCopy (get $given "tls" | default dict) -}}
{{- $_ := set $tls "cert_file" (printf "%s/%s" (include "guardrail-sidecar.tlsDir" .) .Values.tls.certKey) -}}
{{- $_ := set $tls "key_file" (printf "%s/%s" (include "guardrail-sidecar.tlsDir" .) .Values.tls.keyKey) -}}
{{- if .Values.tls.clientCAKey -}}
{{- $dir := ternary (include "guardrail-sidecar.clientCADir" .) (include "guardrail-sidecar.tlsDir" .) (eq (include "guardrail-sidecar.separateClientCA" .) "true") -}}
{{- $_ := set $tls "client_ca_file" (printf "%s/%s" $dir .Values.tls.clientCAKey) -}}
{{- end -}}
{{- $_ := set $server "tls" $tls -}}
{{- else if or .Values.tls.secretName .Values.tls.clientCAKey -}}
{{- fail "tls.secretName / tls.clientCAKey are set but tls.enabled is false: set tls.enabled=true (or remove them)" -}}
{{- end -}}
{{- if .Values.auth.existingSecret -}}
{{- if not (or .Values.auth.tokenKeys .Values.auth.apiKeys) -}}
{{- fail "auth.existingSecret: list the Secret's keys to use, auth.tokenKeys (tokens for every app) and/or auth.apiKeys (app: key or [keys])" -}}
{{- end -}}
{{- $dir := include "guardrail-sidecar.authDir" . -}}
{{- $auth := deepCopy (get $given "auth" | default dict) -}}
{{- $tokens := list -}}
{{- range .Values.auth.tokenKeys }}{{ $tokens = append $tokens (dict "file" (printf "%s/%s" $dir .)) }}{{ end -}}
{{- if $tokens }}{{ $_ := set $auth "tokens" $tokens }}{{ end -}}
{{- $keys := dict -}}
{{- range $app, $names := .Values.auth.apiKeys -}}
{{- $files := list -}}
{{- range (kindIs "string" $names | ternary (list $names) $names) }}{{ $files = append $files (dict "file" (printf "%s/%s" $dir .)) }}{{ end -}}
{{- $_ := set $keys $app $files -}}
{{- end -}}
{{- if $keys }}{{ $_ := set $auth "api_keys" $keys }}{{ end -}}
{{- $_ := set $server "auth" $auth -}}
{{- else if or .Values.auth.tokenKeys .Values.auth.apiKeys -}}
{{- fail "auth.tokenKeys / auth.apiKeys name keys of a Secret: set auth.existingSecret" -}}
{{- end -}}
{{- $_ := set $cfg "server" (mergeOverwrite $given $server) -}}
{{- $review := deepCopy (get $cfg "review" | default dict) -}}
{{- $_ := set $review "url" (get $review "url" | default "sqlite:////var/lib/guardrail/review.db") -}}
{{- $_ := set $review "spool_dir" (get $review "spool_dir" | default "/var/lib/guardrail/spool") -}}
{{- $_ := set $cfg "review" $review -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "guardrail-sidecar.probePort" -}}
{{- include "guardrail-sidecar.healthPort" . | default .Values.ports.grpc | int -}}
{{- end -}}

{{/*
The guardrail container, for the standalone Deployment and for an app's pod (sidecar). In sidecar mode with
sidecar.native it carries restartPolicy: Always and belongs under the pod's initContainers.
*/}}
{{- define "guardrail-sidecar.container" -}}
- name: guardrail
  image: {{ include "guardrail-sidecar.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (eq .Values.mode "sidecar") .Values.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  args: ["serve"]
  env:
    - name: GUARDRAIL_CONFIG
      value: /etc/guardrail/config.yaml
    {{- with (include "guardrail-sidecar.reviewSecret" .) }}
    - name: GUARDRAIL_REVIEW__URL
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ ternary $.Values.review.existingSecretKey "url" (ne $.Values.review.existingSecret "") }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: guard-grpc
      containerPort: {{ .Values.ports.grpc }}
      protocol: TCP
    - name: guard-metrics
      containerPort: {{ .Values.ports.metrics }}
      protocol: TCP
    {{- with (include "guardrail-sidecar.healthPort" .) }}
    - name: guard-health
      containerPort: {{ . }}
      protocol: TCP
    {{- end }}
  startupProbe:
    grpc:
      port: {{ include "guardrail-sidecar.probePort" . }}
    {{- toYaml .Values.probes.startup | nindent 4 }}
  readinessProbe:
    grpc:
      port: {{ include "guardrail-sidecar.probePort" . }}
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  livenessProbe:
    grpc:
      port: {{ include "guardrail-sidecar.probePort" . }}
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: guardrail-config
      mountPath: /etc/guardrail
      readOnly: true
    - name: guardrail-data
      mountPath: /var/lib/guardrail
    - name: guardrail-tmp
      mountPath: /tmp
    {{- if .Values.tls.enabled }}
    - name: guardrail-tls
      mountPath: {{ include "guardrail-sidecar.tlsDir" . }}
      readOnly: true
    {{- if include "guardrail-sidecar.separateClientCA" . }}
    - name: guardrail-client-ca
      mountPath: {{ include "guardrail-sidecar.clientCADir" . }}
      readOnly: true
    {{- end }}
    {{- end }}
    {{- if .Values.auth.existingSecret }}
    - name: guardrail-auth
      mountPath: {{ include "guardrail-sidecar.authDir" . }}
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The volumes the container mounts; names are prefixed so they do not clash with an app's own. */}}
{{- define "guardrail-sidecar.volumes" -}}
- name: guardrail-config
  configMap:
    name: {{ include "guardrail-sidecar.fullname" . }}-config
- name: guardrail-data
  emptyDir:
    sizeLimit: {{ .Values.dataVolume.sizeLimit }}
- name: guardrail-tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- if .Values.tls.enabled }}
- name: guardrail-tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440   # readable by the pod's fsGroup (10001), the guardrail's group
{{- if include "guardrail-sidecar.separateClientCA" . }}
- name: guardrail-client-ca
  secret:
    secretName: {{ include "guardrail-sidecar.clientCASecret" . }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- if .Values.auth.existingSecret }}
- name: guardrail-auth
  secret:
    secretName: {{ .Values.auth.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod annotations that roll the pods when the guardrail config changes. */}}
{{- define "guardrail-sidecar.podAnnotations" -}}
checksum/guardrail-config: {{ include "guardrail-sidecar.config" . | sha256sum }}
{{- end -}}

{{/* ",<selector>" for PromQL label matchers, or nothing. */}}
{{- define "guardrail-sidecar.sel" -}}
{{- with .Values.alerts.selector }},{{ . }}{{ end -}}
{{- end -}}

{{/* "<selector>" alone, for series with no other matcher. */}}
{{- define "guardrail-sidecar.selOnly" -}}
{{- .Values.alerts.selector -}}
{{- end -}}

{{/*
The `job` label (a regex) of the guardrail's scrape targets, for the down/absent alerts: alerts.scrapeJob, else what this
chart's monitor gives: a ServiceMonitor's job is its Service's name (standalone), a PodMonitor's <namespace>/<name>
(sidecar). deploy/prometheus/render.py renders the plain rules file with `guardrail` (the README's scrape config).
*/}}
{{- define "guardrail-sidecar.scrapeJob" -}}
{{- if .Values.alerts.scrapeJob -}}
{{- .Values.alerts.scrapeJob -}}
{{- else if eq .Values.mode "sidecar" -}}
{{- printf "%s/%s" .Release.Namespace (include "guardrail-sidecar.fullname" .) -}}
{{- else -}}
{{- include "guardrail-sidecar.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* The alert rules: the PrometheusRule's spec, and (rendered by deploy/prometheus/render.py) a plain rules file. */}}
{{- define "guardrail-sidecar.ruleGroups" -}}
{{- $a := .Values.alerts -}}
{{- $s := include "guardrail-sidecar.sel" . -}}
{{- $o := include "guardrail-sidecar.selOnly" . -}}
{{- $w := $a.window -}}
{{- $min := $a.minRate -}}
{{- $listed := list -}}
{{- range $inv, $_ := $a.violation.baselines }}{{ if ne $inv "default" }}{{ $listed = append $listed $inv }}{{ end }}{{ end -}}
{{- $runbook := $a.runbookUrl -}}
{{- $job := printf "job=~%q" (include "guardrail-sidecar.scrapeJob" .) -}}
groups:
  - name: guardrail-sidecar
    rules:
      - alert: GuardrailTargetDown
        expr: |-
          up{ {{- $job }}{{ $s -}} } == 0
        for: {{ $a.down.for }}
        labels:
          severity: {{ $a.down.severity }}
        annotations:
          summary: "Prometheus cannot scrape the guardrail at {{`{{ $labels.instance }}`}}"
          description: "The target is known but its metrics port does not answer: the pod is gone, crash-looping or not started, or the port is closed. Apps calling it get UNAVAILABLE, or their fail-open path lets responses through unchecked. Look at the pod's events and logs."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailTargetDown" . | quote }}
          {{- end }}
      - alert: GuardrailNotScraped
        expr: |-
          absent(up{ {{- $job }}{{ $s -}} })
        for: {{ $a.absent.for }}
        labels:
          severity: {{ $a.absent.severity }}
        annotations:
          summary: {{ printf "No guardrail target is scraped (%s)" $job | quote }}
          description: "Prometheus has no target for the guardrail: no pods (scaled to zero, not scheduled, the app's pods gone), a ServiceMonitor/PodMonitor this Prometheus does not select (its labels), or a scrape config that no longer matches (alerts.scrapeJob). Without a scrape no other guardrail alert can fire."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailNotScraped" . | quote }}
          {{- end }}
      {{- range $inv, $base := $a.violation.baselines }}
      {{- $m := ternary (printf "invariant!~%q" (join "|" $listed)) (printf "invariant=%q" $inv) (eq $inv "default") }}
      {{- if or (ne $inv "default") $listed }}
      - alert: GuardrailViolationRateAboveBaseline
        expr: |-
          (
            sum by (namespace, invariant) (rate(guardrail_checks_total{outcome="fail",{{ $m }}{{ $s }}}[{{ $w }}]))
            /
            sum by (namespace, invariant) (rate(guardrail_checks_total{outcome=~"pass|fail",{{ $m }}{{ $s }}}[{{ $w }}]))
          ) > {{ printf "%.4g" (mulf $base $a.violation.factor) }}
          and on (namespace, invariant)
          sum by (namespace, invariant) (rate(guardrail_checks_total{ {{- $m }}{{ $s -}} }[{{ $w }}])) > {{ $min }}
        for: {{ $a.violation.for }}
        labels:
          severity: {{ $a.violation.severity }}
          baseline_for: {{ $inv }}   # which baseline applied ("default": an invariant not listed)
        annotations:
          summary: {{ printf "Invariant {{ $labels.invariant }} fails {{ $value | humanizePercentage }} of checks, above %.4g x its baseline %v" $a.violation.factor $base | quote }}
          description: {{ printf "The violation ratio fail/(pass+fail) over %s is above %.4g. A model, prompt or retrieval change upstream, or a threshold change (guardrail_invariant_threshold), usually explains it: compare by app on the dashboard." $w (mulf $base $a.violation.factor) | quote }}
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailViolationRateAboveBaseline" . | quote }}
          {{- end }}
      {{- end }}
      {{- end }}
      - alert: GuardrailCheckErrors
        expr: |-
          (
            sum by (namespace, invariant) (rate(guardrail_checks_total{outcome="error"{{ $s }}}[{{ $w }}]))
            /
            sum by (namespace, invariant) (rate(guardrail_checks_total{ {{- $o -}} }[{{ $w }}]))
          ) > {{ $a.errors.ratio }}
          and on (namespace, invariant)
          sum by (namespace, invariant) (rate(guardrail_checks_total{ {{- $o -}} }[{{ $w }}])) > {{ $min }}
        for: {{ $a.errors.for }}
        labels:
          severity: {{ $a.errors.severity }}
        annotations:
          summary: "Invariant {{`{{ $labels.invariant }}`}} errors on {{`{{ $value | humanizePercentage }}`}} of checks"
          description: "Checks that raise (an exception, a judge endpoint failing) or are cut off at their timeout_s; their decision follows on_error (fail-open lets the response through unchecked). A check that stops at its soft deadline instead is partial, not an error (GuardrailPartialChecks). Look at the check_duration panel and the server logs."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailCheckErrors" . | quote }}
          {{- end }}
      - alert: GuardrailPartialChecks
        expr: |-
          (
            sum by (namespace, invariant) (rate(guardrail_partial_checks_total{ {{- $o -}} }[{{ $w }}]))
            /
            sum by (namespace, invariant) (rate(guardrail_checks_total{ {{- $o -}} }[{{ $w }}]))
          ) > {{ $a.partial.ratio }}
          and on (namespace, invariant)
          sum by (namespace, invariant) (rate(guardrail_checks_total{ {{- $o -}} }[{{ $w }}])) > {{ $min }}
        for: {{ $a.partial.for }}
        labels:
          severity: {{ $a.partial.severity }}
        annotations:
          summary: "Invariant {{`{{ $labels.invariant }}`}} left part of the response unchecked on {{`{{ $value | humanizePercentage }}`}} of checks"
          description: "Checks that stopped before the end of the response: at the soft deadline of their timeout_s (outcome partial, reason deadline), at a cap such as max_sentences or ner_max_tokens (reason limit), or cut off by the timeout itself (also an error). The unchecked part is decided by on_partial (flag by default; allow lets it through and counts as fail-open). guardrail_partial_checks_total{reason} says why, guardrail_unchecked_chars_total how much: raise timeout_s, give the pods more CPU, or raise the cap."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailPartialChecks" . | quote }}
          {{- end }}
      - alert: GuardrailFailOpen
        expr: |-
          (
            sum by (namespace, invariant) (rate(guardrail_fail_open_total{ {{- $o -}} }[{{ $w }}]))
            /
            sum by (namespace, invariant) (rate(guardrail_checks_total{ {{- $o -}} }[{{ $w }}]))
          ) > {{ $a.failOpen.ratio }}
          and on (namespace, invariant)
          sum by (namespace, invariant) (rate(guardrail_checks_total{ {{- $o -}} }[{{ $w }}])) > {{ $min }}
        for: {{ $a.failOpen.for }}
        labels:
          severity: {{ $a.failOpen.severity }}
        annotations:
          summary: "{{`{{ $value | humanizePercentage }}`}} of {{`{{ $labels.invariant }}`}} checks were let through unchecked (fail-open)"
          description: "Responses are reaching users without this invariant's verdict on all of their text. Reasons are in guardrail_fail_open_total{reason}: timeout (raise timeout_s or add CPU), exception, worker_lost (on_error: fail_open), partial (part of the response unchecked under on_partial: allow; see GuardrailPartialChecks)."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailFailOpen" . | quote }}
          {{- end }}
      - alert: GuardrailShedding
        expr: |-
          (
            sum by (namespace) (rate(guardrail_shed_total{ {{- $o -}} }[{{ $w }}]))
            /
            (
              sum by (namespace) (rate(guardrail_shed_total{ {{- $o -}} }[{{ $w }}]))
              + sum by (namespace) (rate(guardrail_decisions_total{ {{- $o -}} }[{{ $w }}]))
            )
          ) > {{ $a.shed.ratio }}
        for: {{ $a.shed.for }}
        labels:
          severity: {{ $a.shed.severity }}
        annotations:
          summary: "The guardrail refuses {{`{{ $value | humanizePercentage }}`}} of calls (admission control, RESOURCE_EXHAUSTED)"
          description: "More calls arrive than the check workers can take (workers.count, admission.max_queue). Scale out (autoscaling), give the pods more CPU, or make callers back off."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailShedding" . | quote }}
          {{- end }}
      - alert: GuardrailLatencyHigh
        expr: |-
          histogram_quantile(0.99, sum by (namespace, le) (rate(guardrail_request_duration_seconds_bucket{ {{- $o -}} }[{{ $w }}])))
            > {{ $a.latency.p99Seconds }}
          and on (namespace)
          sum by (namespace) (rate(guardrail_request_duration_seconds_count{ {{- $o -}} }[{{ $w }}])) > {{ $min }}
        for: {{ $a.latency.for }}
        labels:
          severity: {{ $a.latency.severity }}
        annotations:
          summary: "p99 of a Check call is {{`{{ $value | humanizeDuration }}`}} (above {{ $a.latency.p99Seconds }}s)"
          description: "The per-invariant latency panel shows which check is slow; a check that reaches the soft deadline of its timeout_s stops there (partial), one cut off at the timeout itself is an error."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailLatencyHigh" . | quote }}
          {{- end }}
      - alert: GuardrailReviewSpoolGrowing
        expr: |-
          max by (namespace, pod, instance) (guardrail_review_spool_depth{ {{- $o -}} }) > {{ $a.reviewSpool.depth }}
          and on (namespace, pod, instance)
          max by (namespace, pod, instance) (deriv(guardrail_review_spool_depth{ {{- $o -}} }[{{ $w }}])) > 0
        for: {{ $a.reviewSpool.for }}
        labels:
          severity: {{ $a.reviewSpool.severity }}
        annotations:
          summary: "{{`{{ $value }}`}} review samples wait in the on-disk spool of {{`{{ $labels.pod }}{{ $labels.instance }}`}} and the spool keeps growing"
          description: "The review store is slow or down (guardrail_review_write_errors_total{target=\"store\"}). Nothing is lost while the spool has room; it is replayed in order when the store is back."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailReviewSpoolGrowing" . | quote }}
          {{- end }}
      - alert: GuardrailReviewSamplesDropped
        expr: |-
          sum by (namespace, cause) (increase(guardrail_review_drops_total{ {{- $o -}} }[{{ $w }}])) > 0
        for: {{ $a.reviewDrops.for }}
        labels:
          severity: {{ $a.reviewDrops.severity }}
        annotations:
          summary: "Review samples were lost ({{`{{ $labels.cause }}`}}): {{`{{ $value }}`}} in the last {{ $w }}"
          description: "queue_full: the writer cannot keep up (raise review.queue_size); spool_error: the spool volume is full or read-only; shutdown: samples still queued when the pod stopped."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailReviewSamplesDropped" . | quote }}
          {{- end }}
      - alert: GuardrailJudgeAgreementLow
        expr: |-
          min by (namespace, invariant) (guardrail_judge_agreement_ratio{ {{- $o -}} }) < {{ $a.judgeAgreement.target }}
        for: {{ $a.judgeAgreement.for }}
        labels:
          severity: {{ $a.judgeAgreement.severity }}
        annotations:
          summary: "The {{`{{ $labels.invariant }}`}} judge agrees with human labels on {{`{{ $value | humanizePercentage }}`}} of held-out cases (target {{ $a.judgeAgreement.target }})"
          description: "From the newest `guardrail calibrate` run. Label more review samples, recalibrate the threshold, or stop blocking on this invariant until it is back above target."
          {{- with $runbook }}
          runbook_url: {{ printf "%s#GuardrailJudgeAgreementLow" . | quote }}
          {{- end }}
{{- end -}}
