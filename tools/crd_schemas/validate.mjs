// Validate custom resources against the schemas of pinned CRDs (tools/crd_schemas.py).
// stdin: a JSON array of manifests; stdout: a JSON array with, per manifest, a list of
// errors ("<path>: <message>"), or null when no schema is known for its apiVersion/kind.
import { EC2NodeClass } from "@kubernetes-models/karpenter/karpenter.k8s.aws/v1";
import { NodePool } from "@kubernetes-models/karpenter/karpenter.sh/v1";

const MODELS = {
  "karpenter.k8s.aws/v1/EC2NodeClass": EC2NodeClass,
  "karpenter.sh/v1/NodePool": NodePool,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map((manifest) => {
  const Model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
  if (!Model) return null;
  try {
    new Model(manifest).validate();
    return [];
  } catch (error) {
    const details = error.errors || [];
    return details.length
      ? details.map((e) => `${e.instancePath || "/"}: ${e.message}${e.params && e.params.allowedValues ? " " + JSON.stringify(e.params.allowedValues) : ""}${e.params && e.params.additionalProperty ? " (" + e.params.additionalProperty + ")" : ""}`)
      : [String(error.message || error)];
  }
});
process.stdout.write(JSON.stringify(results));
