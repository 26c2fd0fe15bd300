# The documented interface of the project's offline tooling. Every target sets up what it
# needs: on a fresh machine the first `make` creates .venv and installs the pinned
# requirements (about a minute), later runs reuse it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-installed
STACK ?= dev
OUT ?= build/plan-$(STACK).json
# `make` alone lists the targets.
.DEFAULT_GOAL := help

.PHONY: cost help up preview-live tunnel offerings preview plan test policy-reference classify preflight smoke rotate-key loadtest kv-bench diff diff-stacks manifests bench tgi-image vllm-flags checkov cloud-init-schema clean

$(DEPS): requirements.txt requirements-dev.txt policies/requirements.txt tools/crd_schemas/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# Pinned CRD schemas (Karpenter) run under Node: tools/crd_schemas.py.
	npm ci --prefix tools/crd_schemas --no-audit --no-fund --loglevel=error
	touch $@

# Checkov has its own virtualenv: it pins boto3 and others differently from the project.
CHECKOV_VENV := .checkov
CHECKOV := $(CHECKOV_VENV)/.deps-installed
$(CHECKOV): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# cloud-init's own schema validator, unpacked from Debian's package (not installed as a service).
CLOUD_INIT := tools/cloud_init/root/.installed
$(CLOUD_INIT): tools/cloud_init/install.sh
	bash tools/cloud_init/install.sh

## This list: every target, with the variables it reads.
help:
	@awk '/^## /{doc = doc (doc ? " " : "") substr($$0, 4); next} \
	     /^[a-z][a-z-]*:/{split($$0, t, ":"); if (doc) printf "  make %-18s %s\n", t[1], doc; doc = ""; next} \
	     {doc = ""}' $(MAKEFILE_LIST)
	@echo "Variables: STACK (default dev), BASE, A, B, OUT, OUTPUTS, AUTH_ENV, PHASE, NO_POLICIES=1, CLIENT, STEP, NEW_KEY_ID, KEY_OUT."

## Offline preview of a stack with the policy pack (exit 1 on a mandatory violation); PHASE=cluster
## previews the first apply of a private EKS stack, NO_POLICIES=1 skips the pack.
preview: $(DEPS)
	$(PY) -m tools.preview --stack $(STACK) $(if $(PHASE),--phase $(PHASE)) $(if $(NO_POLICIES),--no-policies)

## The same preview written as a JSON plan (schema in README.md).
plan: $(DEPS)
	$(PY) -m tools.preview --stack $(STACK) --plan-out $(OUT) --quiet $(if $(PHASE),--phase $(PHASE)) $(if $(NO_POLICIES),--no-policies)

## The real `pulumi up`, always with the policy pack and the environment's pack config; opens the
## SSM tunnel to a private EKS API for the run. PHASE=cluster for the first apply of such a stack.
up: $(DEPS)
	$(PY) -m tools.live up --stack $(STACK) $(if $(PHASE),--phase $(PHASE))

## The real `pulumi preview`, always with the policy pack (AWS credentials and the Pulumi CLI).
preview-live: $(DEPS)
	$(PY) -m tools.live preview --stack $(STACK) $(if $(PHASE),--phase $(PHASE))

## Hold the SSM port forward to a private EKS API open (for kubectl) until Ctrl-C.
tunnel: $(DEPS)
	$(PY) -m tools.live tunnel --stack $(STACK)

## Refresh the dated snapshot of which zones offer each catalogued instance type (AWS credentials).
offerings: $(DEPS)
	$(PY) -m tools.offerings

## Every test, as CI runs them.
test: $(DEPS) $(CHECKOV) $(CLOUD_INIT)
	$(PY) -m pytest tests -n 2 -q

## Checkov over every EKS stack's Kubernetes manifests and the image recipes; a deliberate
## disagreement carries its reason where Checkov reads it (exit 1 on a finding).
checkov: $(DEPS) $(CHECKOV)
	$(PY) -m tools.checkov_scan

## A stack's EC2 user data checked by cloud-init's own schema validator (strict), as the host reads it.
cloud-init-schema: $(DEPS) $(CLOUD_INIT)
	$(PY) -m tools.cloud_init_schema --stack $(STACK)

## Regenerate the policy reference from the pack.
policy-reference: $(DEPS)
	$(PY) -m tools.policy_reference

## Regenerate the exposure classification of every resource type (after a provider upgrade or a rule change).
classify: $(DEPS)
	$(PY) -m tools.classify
	$(PY) -m tools.policy_reference

## Before `pulumi up` (needs AWS credentials): GPU offerings, GPU facts, vCPU quotas.
preflight: $(DEPS)
	$(PY) -m tools.preflight --stack $(STACK)

## After `pulumi up`: check the live endpoint as a client would.
smoke: $(DEPS)
	$(PY) -m tools.smoke --stack $(STACK) $(if $(OUTPUTS),--outputs $(OUTPUTS)) $(if $(AUTH_ENV),--authorization-env $(AUTH_ENV))

## After `pulumi up`: a bounded streaming load test (TTFT, TPOT, throughput, errors) with a JSON report and a
## PNG chart in build/loadtest/<stack>; CALIBRATE=1 compares the measured capacity with the sizing estimate.
loadtest: $(DEPS)
	$(PY) -m tools.loadtest $(if $(BASE_URL),--base-url $(BASE_URL),--stack $(STACK)) $(if $(BASE_URL),$(if $(filter command line environment,$(origin STACK)),--stack $(STACK))) \
	  $(if $(MODEL),--model $(MODEL)) $(if $(OUTPUTS),--outputs $(OUTPUTS)) $(if $(AUTH_ENV),--authorization-env $(AUTH_ENV)) \
	  $(if $(API_KEY_ENV),--api-key-env $(API_KEY_ENV)) --requests $(or $(REQUESTS),100) --concurrency $(or $(CONCURRENCY),8) \
	  --duration $(or $(DURATION),300) --profile $(or $(PROFILE),realistic) $(if $(CALIBRATE),--calibrate --replicas $(or $(REPLICAS),1)) \
	  $(if $(filter command line environment,$(origin OUT)),--out $(OUT))

## Rotate a client's API key with an overlap (AWS credentials): STEP=start (default) writes the new
## key to KEY_OUT (0600); after the client switched, STEP=finish NEW_KEY_ID=<id> retires the old one.
## OUTPUTS: `pulumi stack output --json --stack $(STACK)` saved to a file (default outputs-$(STACK).json).
rotate-key: $(DEPS)
	$(PY) -m tools.rotate_key $(or $(STEP),start) --client $(CLIENT) --outputs $(or $(OUTPUTS),outputs-$(STACK).json) $(if $(filter finish,$(STEP)),--new-key-id $(NEW_KEY_ID),--out $(or $(KEY_OUT),$(CLIENT)-$(STACK)-new-key.txt))

## The sizing calculator against published vLLM KV-cache figures.
kv-bench: $(DEPS)
	$(PY) -m tools.bench_kv

## Monthly cost estimate of a stack's plan from the dated price snapshot (tools/prices.json).
cost: $(DEPS)
	$(PY) -m tools.cost --stack $(STACK) $(if $(PLAN),--plan $(PLAN))

## Markdown diff of a stack's plan between a git revision (default: merge base with main) and the working tree.
diff: $(DEPS)
	$(PY) -m tools.diff --stack $(STACK) $(if $(BASE),--base $(BASE)) $(if $(NO_POLICIES),--no-policies)

## The same between two environments, resources matched by type and name.
diff-stacks: $(DEPS)
	$(PY) -m tools.diff --stacks $(A) $(B) $(if $(NO_POLICIES),--no-policies)

## Every Kubernetes object of the stack as schema-validated YAML, one file each.
manifests: $(DEPS)
	$(PY) -m tools.manifests --stack $(STACK) --out $(if $(filter command line environment,$(origin OUT)),$(OUT),build/manifests/$(STACK))

## Preview time, peak memory and policy time per resource; exits 1 when a target is missed. README=1
## also writes the figures into README.md.
bench: $(DEPS)
	$(PY) -m tools.bench $(if $(README),--readme)

## Every committed stack's vLLM command line against the pinned vLLM's recorded `vllm serve` options.
vllm-flags: $(DEPS)
	$(PY) -m tools.vllm_flags --check

TGI_VERSION ?= 3.3.5
TGI_IMAGE ?= tgi-nonroot:$(TGI_VERSION)
## The non-root TGI image stacks reference (images/tgi-nonroot/), FROM the upstream release pinned
## by TGI_DIGEST=sha256:<64 hex> (required); TGI_VERSION, TGI_IMAGE name the base and the result.
tgi-image:
	@echo "$(TGI_DIGEST)" | grep -Eq '^sha256:[0-9a-f]{64}$$' || { echo "tgi-image: set TGI_DIGEST=sha256:<64 hex>, the digest of ghcr.io/huggingface/text-generation-inference:$(TGI_VERSION) (docker buildx imagetools inspect ghcr.io/huggingface/text-generation-inference:$(TGI_VERSION))" >&2; exit 2; }
	docker build --build-arg TGI_VERSION=$(TGI_VERSION) --build-arg TGI_DIGEST=$(TGI_DIGEST) -t $(TGI_IMAGE) images/tgi-nonroot

## Remove the virtualenv and everything built.
clean:
	rm -rf $(VENV) $(CHECKOV_VENV) tools/cloud_init/root build .pytest_cache
