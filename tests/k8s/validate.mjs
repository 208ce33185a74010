// Validates Kubernetes objects offline, strictly: each document of the YAML
// files given goes through the schema validator kubernetes-models generated
// for its apiVersion and kind (types, enums, required fields, formats), and
// then every field must be one the schema knows. kubernetes-models alone
// lets a misspelled field through (its schemas do not forbid extra
// properties), so each object is wrapped in a Proxy that records which of
// its fields the validator reads: the generated code reads every field its
// schema declares, and every entry of a map (labels, data, resources), so
// a field it never read is not in the schema. Prints one line per problem
// (file, document, kind/name, path, what) and exits 1 if there was any.
// Usage: node validate.mjs FILE.yaml...
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

function schemaName(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["core", apiVersion];
  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
  return `IoK8sApi${cap(group.split(".")[0])}${cap(version)}${kind}`;
}

// Wraps value (deeply) so reads are recorded in `seen` (a Set of paths).
function watch(value, path, seen, all) {
  if (value === null || typeof value !== "object") return value;
  for (const k of Object.keys(value)) all.add(`${path}/${k}`);
  return new Proxy(value, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver);
      if (typeof key !== "string" || !Object.prototype.hasOwnProperty.call(target, key)) return v;
      seen.add(`${path}/${key}`);
      return watch(v, `${path}/${key}`, seen, all);
    },
  });
}

let problems = 0;
const say = (where, what) => {
  problems++;
  console.log(`${where}: ${what}`);
};

for (const file of process.argv.slice(2)) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const [i, doc] of docs.entries()) {
    if (doc.errors.length) {
      say(`${file}#${i + 1}`, `YAML: ${doc.errors[0].message}`);
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    // base64 ([]byte) fields: the API server's decoder skips line breaks, and
    // kustomize folds long values; the schema's "byte" format does not.
    for (const field of ["data", "binaryData"])
      if ((obj.kind === "Secret" && field === "data") || (obj.kind === "ConfigMap" && field === "binaryData"))
        for (const [k, v] of Object.entries(obj[field] ?? {}))
          if (typeof v === "string") obj[field][k] = v.replace(/\n/g, "");
    const id = `${obj.kind ?? "?"}/${obj.metadata?.name ?? "?"}`;
    const where = `${file}#${i + 1} ${id}`;
    if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
      say(where, "no apiVersion or kind");
      continue;
    }
    let validate;
    try {
      ({ validate } = await import(`kubernetes-models/_schemas/${schemaName(obj.apiVersion, obj.kind)}`));
    } catch {
      say(where, `no schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
      continue;
    }
    const seen = new Set(), all = new Set();
    if (!validate(watch(obj, "", seen, all))) {
      for (const e of validate.errors)
        say(where, `${e.instancePath || "/"}: ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`);
      continue; // a failed branch stops reading: unknown fields are judged on valid objects
    }
    for (const p of all) if (!seen.has(p)) say(where, `${p}: unknown field (not in the ${obj.apiVersion} ${obj.kind} schema)`);
  }
}
if (problems) {
  console.log(`validate: ${problems} problem(s)`);
  process.exit(1);
}
console.log(`validate: ${process.argv.length - 2} file(s), every object valid and every field known`);
