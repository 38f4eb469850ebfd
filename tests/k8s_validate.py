#!/usr/bin/python3
"""k8s_validate.py: validates Kubernetes objects against the schemas in shared/k8s-schemas.

usage: k8s_validate.py SCHEMAS_DIR FILE... ("-" reads stdin)

Every YAML document of every FILE is checked against the schema of its apiVersion and kind:
  v1 Pod, Service, Secret, batch/v1 Job  the strict core schemas (kubernetes-v1.29.0-standalone-
                                     strict: unknown fields are errors)
  kubeflow.org/v1 PyTorchJob, TFJob  the training operator's CRD (v1.9), made strict the way
                                     `kubectl --validate=strict` is (unknown fields are errors),
                                     and each replica's pod template as a strict Pod
  kubeflow.org/v2beta1 MPIJob        the mpi-operator's CRD (v0.8.2), likewise
  scheduling.k8s.io/v1 PriorityClass the core definitions (_definitions.json), strict
  PodGroup (Volcano, scheduler-plugins), Volcano Queue, Kueue ResourceFlavor / ClusterQueue /
  LocalQueue: no schema of these is in shared/, so FIELDS below lists each project's spec
  fields (cited by repository, path and commit) as a strict schema: a misspelt or unknown
  field, or a wrong type, fails
  trainer.kubeflow.org/v1alpha1      Kubeflow Trainer v2's CRDs (TrainJob, TrainingRuntime,
    TrainJob, (Cluster)TrainingRuntime  ClusterTrainingRuntime), strict; a runtime's JobSet
                                     template's pod templates also as strict Pods
  jobset.x-k8s.io/v1alpha2 JobSet    the JobSet CRD, strict; each replicated job's Job template
                                     as a strict batch/v1 Job
Prints one line per object ("ok FILE Kind/name" or "FAIL FILE Kind/name: where: why") and
exits 1 when any object fails, 2 when the schemas are not there.
Needs python3-jsonschema and python3-yaml (Debian; `make deps`).
"""
import json
import os
import sys

import jsonschema
import yaml

CORE = "kubernetes-v1.29.0-standalone-strict"
CORE_FILES = {("v1", "Pod"): "pod-v1.json", ("v1", "Service"): "service-v1.json",
              ("batch/v1", "Job"): "job-batch-v1.json", ("v1", "Secret"): "secret-v1.json"}
CRDS = {("kubeflow.org/v1", "PyTorchJob"):
        ("kubeflow-training-operator-v1.9/kubeflow.org_pytorchjobs.yaml", "pytorchReplicaSpecs"),
        ("kubeflow.org/v1", "TFJob"):
        ("kubeflow-training-operator-v1.9/kubeflow.org_tfjobs.yaml", "tfReplicaSpecs"),
        ("kubeflow.org/v2beta1", "MPIJob"):
        ("kubeflow-mpi-operator/kubeflow.org_mpijobs.yaml", "mpiReplicaSpecs"),
        ("trainer.kubeflow.org/v1alpha1", "TrainJob"):
        ("kubeflow-trainer-v2/trainer.kubeflow.org_trainjobs.yaml", None),
        ("trainer.kubeflow.org/v1alpha1", "TrainingRuntime"):
        ("kubeflow-trainer-v2/trainer.kubeflow.org_trainingruntimes.yaml", None),
        ("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime"):
        ("kubeflow-trainer-v2/trainer.kubeflow.org_clustertrainingruntimes.yaml", None),
        ("jobset.x-k8s.io/v1alpha2", "JobSet"): ("jobset/jobset.x-k8s.io_jobsets.yaml", None)}


QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "number"},
                      {"type": "string", "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
                       r"([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"}]}
RESOURCES = {"type": "object", "additionalProperties": QUANTITY}
INT32 = {"type": "integer", "minimum": -2**31, "maximum": 2**31 - 1}
STR = {"type": "string"}


def obj(props, required=()):
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


# Spec fields of kinds with no schema in shared/k8s-schemas, from each project's own types:
#   volcano-sh/apis @ v1.9.0 (bc4a6b76c36f6eb9c7dd530743298aa2029195dd), the version the training
#     operator v1.9 builds with: pkg/apis/scheduling/v1beta1/types.go PodGroupSpec, QueueSpec
#   kubernetes-sigs/scheduler-plugins @ 903da7df82cb8794dda8f2d510ba1156111662dd:
#     config/crd/bases/scheduling.x-k8s.io_podgroups.yaml (v1alpha1)
#   kubernetes-sigs/kueue @ ff69552e79ad21652c36caa97038382e55625cf7:
#     config/components/crd/bases/kueue.x-k8s.io_{resourceflavors,clusterqueues,localqueues}.yaml
#     (v1beta1; nested objects the manifests do not use are left open)
ANY = {"type": "object"}
STOP = {"enum": ["None", "Hold", "HoldAndDrain"]}
FIELDS = {
    ("scheduling.volcano.sh/v1beta1", "PodGroup"): obj({
        "minMember": INT32, "minTaskMember": {"type": "object", "additionalProperties": INT32},
        "queue": STR, "priorityClassName": STR, "minResources": RESOURCES}),
    ("scheduling.volcano.sh/v1beta1", "Queue"): obj({
        "weight": INT32, "capability": RESOURCES, "reclaimable": {"type": "boolean"},
        "extendClusters": {"type": "array"}, "guarantee": ANY, "affinity": ANY, "type": STR,
        "parent": STR, "deserved": RESOURCES}),
    ("scheduling.x-k8s.io/v1alpha1", "PodGroup"): obj({
        "minMember": dict(INT32, minimum=1), "minResources": RESOURCES,
        "scheduleTimeoutSeconds": INT32}),
    ("kueue.x-k8s.io/v1beta1", "ResourceFlavor"): obj({
        "nodeLabels": {"type": "object", "additionalProperties": STR},
        "nodeTaints": {"type": "array"}, "tolerations": {"type": "array"},
        "topologyName": STR}),
    ("kueue.x-k8s.io/v1beta1", "ClusterQueue"): obj({
        "admissionChecks": {"type": "array"}, "admissionChecksStrategy": ANY,
        "admissionScope": ANY, "cohort": STR, "fairSharing": ANY, "flavorFungibility": ANY,
        "namespaceSelector": ANY, "preemption": ANY,
        "queueingStrategy": {"enum": ["StrictFIFO", "BestEffortFIFO"]},
        "resourceGroups": {"type": "array", "items": obj({
            "coveredResources": {"type": "array", "items": STR},
            "flavors": {"type": "array", "items": obj({
                "name": STR,
                "resources": {"type": "array", "items": obj({
                    "name": STR, "nominalQuota": QUANTITY, "borrowingLimit": QUANTITY,
                    "lendingLimit": QUANTITY}, ["name", "nominalQuota"])}},
                ["name", "resources"])}}, ["coveredResources", "flavors"])},
        "stopPolicy": STOP}),
    ("kueue.x-k8s.io/v1beta1", "LocalQueue"): obj({
        "clusterQueue": STR, "fairSharing": ANY, "stopPolicy": STOP}),
}
META = obj({"name": STR, "namespace": STR, "labels": ANY, "annotations": ANY,
            "ownerReferences": {"type": "array"}}, ["name"])


def fields_schema(key):
    return obj({"apiVersion": {"const": key[0]}, "kind": {"const": key[1]}, "metadata": META,
                "spec": FIELDS[key]}, ["apiVersion", "kind", "metadata"])


def strict(node):
    """Object schemas with properties reject unknown fields unless the CRD says otherwise."""
    if isinstance(node, dict):
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node


class Schemas:
    def __init__(self, root):
        self.root = root
        self.cache = {}

    def core(self, key):
        if key not in self.cache:
            with open(os.path.join(self.root, CORE, CORE_FILES[key])) as f:
                self.cache[key] = jsonschema.Draft7Validator(json.load(f))
        return self.cache[key]

    def fields(self, key):
        if key not in self.cache:
            self.cache[key] = jsonschema.Draft7Validator(fields_schema(key))
        return self.cache[key]

    def definition(self, name):
        """A strict validator for one definition of _definitions.json (PriorityClass)."""
        if name not in self.cache:
            with open(os.path.join(self.root, CORE, "_definitions.json")) as f:
                defs = strict(json.load(f))
            defs["$ref"] = "#/definitions/" + name
            self.cache[name] = jsonschema.Draft7Validator(defs)
        return self.cache[name]

    def crd(self, key):
        if key not in self.cache:
            with open(os.path.join(self.root, CRDS[key][0])) as f:
                crd = yaml.safe_load(f)
            version = key[0].split("/")[1]
            v = [x for x in crd["spec"]["versions"] if x["name"] == version]
            schema = strict(v[0]["schema"]["openAPIV3Schema"])
            self.cache[key] = jsonschema.Draft7Validator(schema)
        return self.cache[key]


def errors(validator, obj, prefix=""):
    out = []
    for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
        where = prefix + "/".join(str(p) for p in e.path)
        out.append("%s: %s" % (where or "(top)", e.message[:300]))
    return out


def replicated_jobs(schemas, doc):
    """A JobSet's (or a runtime's JobSet template's) replicated jobs as strict Jobs."""
    spec = doc.get("spec") or {}
    if doc.get("kind") != "JobSet":
        spec = (spec.get("template") or {}).get("spec") or {}
    out = []
    for i, rj in enumerate(spec.get("replicatedJobs") or []):
        tmpl = (rj or {}).get("template") or {}
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": tmpl.get("metadata") or {},
               "spec": tmpl.get("spec") or {}}
        out += errors(schemas.core(("batch/v1", "Job")), job, "replicatedJobs/%d/template/" % i)
    return out


def check(schemas, doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CORE_FILES:
        return errors(schemas.core(key), doc)
    if key in FIELDS:
        return errors(schemas.fields(key), doc)
    if key == ("scheduling.k8s.io/v1", "PriorityClass"):
        return errors(schemas.definition("io.k8s.api.scheduling.v1.PriorityClass"), doc)
    if key not in CRDS:
        return ["no schema for apiVersion %s kind %s" % key]
    out = errors(schemas.crd(key), doc)
    if CRDS[key][1] is None:
        return out + replicated_jobs(schemas, doc)
    specs = (doc.get("spec") or {}).get(CRDS[key][1]) or {}
    for rtype, rs in specs.items():
        tmpl = (rs or {}).get("template") or {}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": tmpl.get("metadata") or {},
               "spec": tmpl.get("spec") or {}}
        out += errors(schemas.core(("v1", "Pod")), pod, "%s/%s/template/" % (CRDS[key][1], rtype))
    return out


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    if not os.path.isdir(os.path.join(argv[1], CORE)):
        print("k8s_validate: no schemas at %s" % argv[1], file=sys.stderr)
        return 2
    schemas, failed, n = Schemas(argv[1]), 0, 0
    for path in argv[2:]:
        text = sys.stdin.read() if path == "-" else open(path).read()
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            n += 1
            md = doc.get("metadata") or {}
            name = "%s/%s" % (doc.get("kind"), md.get("name") or md.get("generateName"))
            errs = check(schemas, doc)
            for e in errs:
                print("FAIL %s %s: %s" % (path, name, e))
            if not errs:
                print("ok %s %s" % (path, name))
            failed += bool(errs)
    if n == 0:
        print("FAIL: no objects in %s" % " ".join(argv[2:]))
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
