// Validates the ServiceMonitor and PrometheusRule objects that validate_k8s.py wrote to the
// JSON file named by argv[2] against the Prometheus Operator's CRD schemas
// (@kubernetes-models/prometheus-operator, generated from the operator's CRDs).
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const models = { ServiceMonitor, PrometheusRule };
const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const { where, object } of objects) {
  const Model = models[object.kind];
  if (object.apiVersion !== "monitoring.coreos.com/v1" || !Model) {
    console.error(`ERROR ${where}: not a monitoring.coreos.com/v1 ServiceMonitor or PrometheusRule`);
    failed++;
    continue;
  }
  try {
    new Model(object).validate();
  } catch (e) {
    console.error(`ERROR ${where}: ${e.message}`);
    failed++;
  }
}
if (objects.length === 0) {
  console.error("ERROR no custom resources to validate");
  failed++;
}
if (failed > 0) process.exit(1);
console.log(`Prometheus Operator CRD schemas: ${objects.length} custom resources valid`);
