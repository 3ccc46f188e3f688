// Reads a JSON array of Kubernetes objects on stdin and validates every monitoring.coreos.com/v1 object against the
// prometheus-operator CRD schema (the schema the API server enforces: types, enums, patterns such as durations).
// Prints one JSON line per object: {"kind", "name", "error"}; exits 1 when any object is invalid.
import { PodMonitor, PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const KINDS = { ServiceMonitor, PodMonitor, PrometheusRule };
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let failed = false;
for (const doc of JSON.parse(Buffer.concat(chunks).toString("utf8"))) {
  const Model = doc.apiVersion === "monitoring.coreos.com/v1" ? KINDS[doc.kind] : undefined;
  let error = Model ? null : `no schema for ${doc.apiVersion} ${doc.kind}`;
  if (Model) {
    try {
      new Model(doc).validate();
    } catch (e) {
      error = String(e.message);
    }
  }
  failed ||= error !== null;
  console.log(JSON.stringify({ kind: doc.kind, name: doc.metadata?.name, error }));
}
process.exit(failed ? 1 : 0);
