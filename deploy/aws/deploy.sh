#!/usr/bin/env bash
# deploy/aws/deploy.sh - build and deploy the AWS remote execution service.
#
# The guide's seven steps:
#   1. build the worker binary and the three Lambda bootstraps (linux/amd64)
#   2. build the worker AMI with Packer            (skipped with --skip-ami)
#   3. package the Lambdas as zips
#   4. terraform init (workspace = environment)
#   5. terraform apply -var worker_ami_id=...      (plan only with --plan-only)
#   6. print api_endpoint and api_key
#   7. run scripts/smoke-test.sh against the new endpoint
#
# Runs with bash 3.2 (macOS) or newer.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: deploy/aws/deploy.sh [options]

  --env ENV            dev, staging or prod (default: dev); reads
                       terraform/environments/ENV.tfvars and uses the
                       Terraform workspace ENV
  --skip-ami AMI_ID    do not build an AMI, deploy this one
  --plan-only          build locally and show `terraform plan`; change nothing
                       (without --skip-ami, plans with the AMI already deployed)
  --skip-smoke-test    do not run scripts/smoke-test.sh after the apply
  -y, --yes            apply without Terraform's confirmation prompt
  -h, --help           this help

Environment:
  AWS_PROFILE / AWS credentials   the account to deploy into
  TF_VAR_api_key       API key to deploy; default: the one already deployed,
                       else a new random key
  VERSION              version stamped into the binaries (default: git describe)
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TF_DIR="$HERE/terraform"
PACKER_DIR="$HERE/packer"
BUILD="$HERE/build"
LAMBDAS="lambda-api lambda-provisioner lambda-reaper"

ENV_NAME=dev
AMI_ID=""
PLAN_ONLY=false
SKIP_SMOKE=false
AUTO_APPROVE=false

die() {
	printf 'deploy.sh: error: %s\n' "$*" >&2
	exit 1
}
warn() { printf 'deploy.sh: warning: %s\n' "$*" >&2; }
step() { printf '\n=== %s\n' "$*"; }
need() {
	command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed. $2"
}
tf() { terraform -chdir="$TF_DIR" "$@"; }

while [ $# -gt 0 ]; do
	case "$1" in
	--env)
		[ $# -ge 2 ] || die "--env needs a value (dev, staging, prod)"
		ENV_NAME=$2
		shift 2
		;;
	--env=*)
		ENV_NAME=${1#--env=}
		shift
		;;
	--skip-ami)
		[ $# -ge 2 ] || die "--skip-ami needs an AMI id (ami-...)"
		AMI_ID=$2
		shift 2
		;;
	--skip-ami=*)
		AMI_ID=${1#--skip-ami=}
		shift
		;;
	--plan-only)
		PLAN_ONLY=true
		shift
		;;
	--skip-smoke-test)
		SKIP_SMOKE=true
		shift
		;;
	-y | --yes)
		AUTO_APPROVE=true
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $1"
		;;
	esac
done

case "$ENV_NAME" in
dev | staging | prod) ;;
*) die "--env must be dev, staging or prod (got '$ENV_NAME')" ;;
esac
if [ -n "$AMI_ID" ] && ! [[ "$AMI_ID" =~ ^ami-[0-9a-f]{8,17}$ ]]; then
	die "--skip-ami: '$AMI_ID' is not an AMI id (ami-0123456789abcdef0)"
fi

TFVARS="$TF_DIR/environments/$ENV_NAME.tfvars"
[ -f "$TFVARS" ] || die "$TFVARS not found"

# tfvar NAME DEFAULT: a plain string setting of the environment's tfvars.
# The AMI is built before Terraform runs, so the names the worker needs
# are read from the same file Terraform will read.
tfvar() {
	local v
	v=$(sed -n -E "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\1/p" "$TFVARS" | tail -n 1)
	printf '%s' "${v:-$2}"
}
PROJECT=$(tfvar project_name seren-replication)
REGION=$(tfvar aws_region us-east-1)
TABLE=$(tfvar jobs_table_name replication-jobs)
NAMESPACE=$(tfvar metrics_namespace SerenReplication)
ENVIRONMENT=$(tfvar environment "$ENV_NAME")
# SEREN_DEPLOYMENT, as terraform/main.tf derives it (local.deployment).
if [[ "$PROJECT" == *"-$ENVIRONMENT" ]]; then DEPLOYMENT=$PROJECT; else DEPLOYMENT="$PROJECT-$ENVIRONMENT"; fi
# allow_networks (a list) as Packer's HCL list syntax; empty when unset.
ALLOW_NETWORKS=$(sed -nE 's/^[[:space:]]*allow_networks[[:space:]]*=[[:space:]]*(\[.*\])[[:space:]]*$/\1/p' "$TFVARS" | tail -n 1)
export AWS_REGION="$REGION"

# ---------------------------------------------------------------------------
step "Checking tools and credentials"
need go "Install Go (https://go.dev/dl/); the module's go.mod says which version."
need zip "Install zip (apt-get install zip / brew install zip)."
need terraform "Install Terraform >= 1.0 (https://developer.hashicorp.com/terraform/install)."
need aws "Install the AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)."
if [ -z "$AMI_ID" ] && [ "$PLAN_ONLY" = false ]; then
	need packer "Install Packer >= 1.7 (https://developer.hashicorp.com/packer/install), or pass --skip-ami AMI_ID."
fi
if [ "$SKIP_SMOKE" = false ] && [ "$PLAN_ONLY" = false ]; then
	need curl "Install curl (the smoke test uses it), or pass --skip-smoke-test."
fi
ACCOUNT=$(aws sts get-caller-identity --query Account --output text 2>/dev/null) ||
	die "no usable AWS credentials: run 'aws configure' (or set AWS_PROFILE) and check 'aws sts get-caller-identity'"
echo "account $ACCOUNT, region $REGION, environment $ENV_NAME, project $PROJECT"

VERSION=${VERSION:-$(git -C "$REPO" describe --tags --always --dirty 2>/dev/null || echo dev)}
LDFLAGS="-s -w -X github.com/serenorg/postgres-seren-replicator/internal/buildinfo.Version=$VERSION"

# ---------------------------------------------------------------------------
step "1/7 Building the worker binary and the Lambda bootstraps ($VERSION, linux/amd64)"
mkdir -p "$BUILD"
for pkg in postgres-seren-replicator $LAMBDAS; do
	[ -d "$REPO/cmd/$pkg" ] || die "$REPO/cmd/$pkg not found: this checkout cannot build the AWS deployment"
done
(
	cd "$REPO"
	export GOOS=linux GOARCH=amd64 CGO_ENABLED=0
	go build -trimpath -ldflags "$LDFLAGS" -o "$BUILD/postgres-seren-replicator" ./cmd/postgres-seren-replicator
	for fn in $LAMBDAS; do
		mkdir -p "$BUILD/$fn"
		go build -trimpath -tags lambda.norpc -ldflags "$LDFLAGS" -o "$BUILD/$fn/bootstrap" "./cmd/$fn"
	done
)
ls -l "$BUILD/postgres-seren-replicator"

# ---------------------------------------------------------------------------
step "2/7 Building the worker AMI with Packer"
if [ -n "$AMI_ID" ]; then
	echo "skipped: deploying $AMI_ID (--skip-ami)"
elif [ "$PLAN_ONLY" = true ]; then
	echo "skipped: --plan-only builds no AMI"
else
	rm -f "$BUILD/packer-manifest.json"
	packer init "$PACKER_DIR"
	packer build -color=false \
		-var "aws_region=$REGION" \
		-var "binary_path=$BUILD/postgres-seren-replicator" \
		-var "version=$VERSION" \
		-var "project_name=$PROJECT" \
		-var "jobs_table_name=$TABLE" \
		-var "metrics_namespace=$NAMESPACE" \
		-var "deployment=$DEPLOYMENT" \
		-var "allow_networks=${ALLOW_NETWORKS:-[]}" \
		"$PACKER_DIR"
	artifact=$(grep -o '"artifact_id": *"[^"]*"' "$BUILD/packer-manifest.json" | tail -n 1 | sed -E 's/.*"([^"]*)"$/\1/')
	AMI_ID=${artifact##*:}
	[[ "$AMI_ID" =~ ^ami- ]] || die "could not read the new AMI id from $BUILD/packer-manifest.json"
	echo "AMI: $AMI_ID"
fi

# ---------------------------------------------------------------------------
step "3/7 Packaging the Lambda functions"
for fn in $LAMBDAS; do
	# A fixed timestamp makes the zip depend only on the binary, so an
	# unchanged function is not redeployed.
	touch -t 198001010000 "$BUILD/$fn/bootstrap"
	rm -f "$BUILD/$fn.zip"
	(cd "$BUILD/$fn" && zip -q -X "$BUILD/$fn.zip" bootstrap)
	echo "Lambda function packaged: $BUILD/$fn.zip"
done

# ---------------------------------------------------------------------------
step "4/7 Initializing Terraform (workspace $ENV_NAME)"
if [ ! -f "$TF_DIR/backend.tf" ]; then
	warn "no terraform/backend.tf: state stays on this machine. For a shared deployment copy terraform/backend.tf.example to terraform/backend.tf first."
fi
tf init -input=false
tf workspace select "$ENV_NAME" >/dev/null 2>&1 || tf workspace new "$ENV_NAME"

if [ -z "$AMI_ID" ]; then
	AMI_ID=$(tf output -raw worker_ami_id 2>/dev/null) ||
		die "--plan-only without --skip-ami needs an existing deployment to take the AMI from; pass --skip-ami AMI_ID"
	echo "planning with the deployed AMI $AMI_ID"
fi

# A reused AMI must have been built for this deployment's table and namespace
# (its /etc/seren-worker.env is baked in). The tags say what it was built for.
ami_tag() {
	aws ec2 describe-images --region "$REGION" --image-ids "$AMI_ID" \
		--query "Images[0].Tags[?Key=='$1'].Value | [0]" --output text 2>/dev/null || true
}
ami_table=$(ami_tag SerenJobsTable)
ami_namespace=$(ami_tag SerenMetricsNamespace)
if [ -z "$ami_table" ] || [ "$ami_table" = "None" ]; then
	warn "cannot read the tags of $AMI_ID; make sure it was built for table $TABLE and namespace $NAMESPACE"
elif [ "$ami_table" != "$TABLE" ] || [ "$ami_namespace" != "$NAMESPACE" ]; then
	die "$AMI_ID was built for table '$ami_table' / namespace '$ami_namespace', but $ENV_NAME uses '$TABLE' / '$NAMESPACE'; build a new AMI (drop --skip-ami)"
fi

if [ -z "${TF_VAR_api_key:-}" ]; then
	if existing=$(tf output -raw api_key 2>/dev/null) && [ -n "$existing" ]; then
		TF_VAR_api_key=$existing
		echo "keeping the deployed API key"
	else
		need openssl "Install openssl, or set TF_VAR_api_key to the API key to deploy."
		TF_VAR_api_key="sk_live_$(openssl rand -hex 24)"
		echo "generated a new API key"
	fi
fi
export TF_VAR_api_key # via the environment: never on a command line (ps)

# ---------------------------------------------------------------------------
if [ "$PLAN_ONLY" = true ]; then
	step "5/7 Planning (--plan-only: nothing is changed)"
	tf plan -input=false -var-file="$TFVARS" -var "worker_ami_id=$AMI_ID"
	exit 0
fi

step "5/7 Deploying with Terraform"
if [ "$AUTO_APPROVE" = true ]; then
	tf apply -input=false -auto-approve -var-file="$TFVARS" -var "worker_ami_id=$AMI_ID"
else
	tf apply -input=false -var-file="$TFVARS" -var "worker_ami_id=$AMI_ID"
fi

deployed_table=$(tf output -raw jobs_table_name)
[ "$deployed_table" = "$TABLE" ] ||
	die "Terraform deployed table '$deployed_table' but the AMI was given '$TABLE' (deploy.sh reads only plain string values from $TFVARS)"

# ---------------------------------------------------------------------------
step "6/7 Outputs"
API_ENDPOINT=$(tf output -raw api_endpoint)
API_KEY=$(tf output -raw api_key)
printf '%s\n' "$API_ENDPOINT" >"$HERE/.api_endpoint"
(
	umask 077
	printf '%s\n' "$API_KEY" >"$HERE/.api_key"
)
echo "api_endpoint = \"$API_ENDPOINT\""
if [ -t 1 ]; then
	echo "api_key = \"$API_KEY\""
else
	echo "api_key = (not printed: output is not a terminal; see $HERE/.api_key or 'terraform output -raw api_key')"
fi
echo "Saved to $HERE/.api_endpoint and $HERE/.api_key (mode 600). For the CLI:"
echo "  export SEREN_REMOTE_API=\$(cat $HERE/.api_endpoint) SEREN_API_KEY=\$(cat $HERE/.api_key)"

# ---------------------------------------------------------------------------
step "7/7 Smoke test"
if [ "$SKIP_SMOKE" = true ]; then
	echo "skipped (--skip-smoke-test)"
	exit 0
fi
SMOKE="$REPO/scripts/smoke-test.sh"
[ -f "$SMOKE" ] || die "$SMOKE not found: the deployment is up but has NOT been smoke-tested"
API_ENDPOINT="$API_ENDPOINT" API_KEY="$API_KEY" bash "$SMOKE"
