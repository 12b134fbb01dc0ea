# shellcheck shell=bash
# emulators.sh — local AWS emulators for tests (the tested recipe in
# shared/reference/aws-emulators.md, adapted). Source it, then:
#
#   source scripts/emulators.sh
#   emu_install            # pinned versions, cached under $EMU_DIR
#   emu_start              # starts them and exports AWS_ENDPOINT_URL_* etc.
#   trap emu_stop EXIT     # kills only the PIDs it started
#
#   dynalite  (DynamoDB)                    127.0.0.1:$EMU_PORT_DYNAMODB (47001)
#   fauxqs    (SQS)                         127.0.0.1:$EMU_PORT_SQS      (47002)
#   local-kms (KMS; listens on all ifaces)  :$EMU_PORT_KMS               (47003)
#   moto      (SSM, EC2, CloudWatch, Logs)  127.0.0.1:$EMU_PORT_MOTO     (47010)
#   moto with IAM enforcement (IAM tests)   127.0.0.1:$EMU_PORT_MOTO_IAM (47020)
#   aws-lambda-rie (one function)           emu_start_lambda BOOTSTRAP   (47004/47005)
#
# moto cannot be installed from the registries reachable here; it is
# preinstalled on the project's machines. When it is missing, emu_start
# reports it and does not export the moto endpoints, so the tests that need
# it skip locally and FAIL under CI=true (see internal/testutil/awstest).
#
# Must be sourced in the shell that later runs emu_stop: the emulators are
# that shell's children.

EMU_DIR="${EMU_DIR:-/tmp/seren-awsemu}"
EMU_BIN="$EMU_DIR/bin"
EMU_RUN="$EMU_DIR/run"
EMU_PORT_DYNAMODB="${EMU_PORT_DYNAMODB:-47001}"
EMU_PORT_SQS="${EMU_PORT_SQS:-47002}"
EMU_PORT_KMS="${EMU_PORT_KMS:-47003}"
EMU_PORT_RIE="${EMU_PORT_RIE:-47004}"
EMU_PORT_RIE_RUNTIME="${EMU_PORT_RIE_RUNTIME:-47005}"
EMU_PORT_MOTO="${EMU_PORT_MOTO:-47010}"
EMU_PORT_MOTO_IAM="${EMU_PORT_MOTO_IAM:-47020}"
# The enforcing moto answers this many unsigned (root) actions, then only
# requests signed by an IAM user's key whose policies allow the action
# (internal/awslambda/iam_enforced_test.go creates its users with them).
EMU_MOTO_IAM_NO_AUTH=3

# Pinned versions (the npm ones live in tools/aws-emulators/package-lock.json).
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d
EMU_KMS_KEY_ID=11111111-2222-3333-4444-555555555555
EMU_KMS_ALIAS=alias/seren-replication-credentials

_emu_repo_root() { (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); }

# The AWS provider schema the Terraform checker reads
# (internal/awslambda/terraform_test.go): @cdktf/provider-aws is generated
# from hashicorp/aws; 19.x is aws 5.x. Unpacked (no dependencies needed)
# into $EMU_DIR/cdktf/package; the test finds it through SEREN_TF_SCHEMA_DIR.
CDKTF_PROVIDER_AWS_VERSION=19.65.1

emu_install_tf_schema() {
  local dir="$EMU_DIR/cdktf"
  if [ "$(cat "$dir/version" 2>/dev/null)" = "$CDKTF_PROVIDER_AWS_VERSION" ] && [ -d "$dir/package/lib" ]; then
    return 0
  fi
  rm -rf "$dir" && mkdir -p "$dir" || return 1
  (cd "$dir" && npm pack --silent "@cdktf/provider-aws@$CDKTF_PROVIDER_AWS_VERSION" >/dev/null &&
    tar xzf "cdktf-provider-aws-$CDKTF_PROVIDER_AWS_VERSION.tgz" && rm -f ./*.tgz) || return 1
  echo "$CDKTF_PROVIDER_AWS_VERSION" >"$dir/version"
}

emu_install() {
  local root npm_src
  emu_install_tf_schema || return 1
  root=$(_emu_repo_root) || return 1
  npm_src="$root/tools/aws-emulators"
  mkdir -p "$EMU_BIN" "$EMU_DIR/node" || return 1
  if [ ! -x "$EMU_BIN/local-kms" ] || [ "$(cat "$EMU_BIN/local-kms.version" 2>/dev/null)" != "$LOCAL_KMS_VERSION" ]; then
    GOBIN="$EMU_BIN" go install "github.com/nsmithuk/local-kms@$LOCAL_KMS_VERSION" || return 1
    echo "$LOCAL_KMS_VERSION" >"$EMU_BIN/local-kms.version"
  fi
  if [ ! -x "$EMU_BIN/aws-lambda-rie" ] || [ "$(cat "$EMU_BIN/aws-lambda-rie.version" 2>/dev/null)" != "$RIE_VERSION" ]; then
    GOBIN="$EMU_BIN" go install "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$RIE_VERSION" || return 1
    echo "$RIE_VERSION" >"$EMU_BIN/aws-lambda-rie.version"
  fi
  # npm ci from the committed lockfile; redone only when the lockfile changes.
  if ! cmp -s "$npm_src/package-lock.json" "$EMU_DIR/node/package-lock.json" ||
    [ ! -d "$EMU_DIR/node/node_modules/fauxqs" ] || [ ! -d "$EMU_DIR/node/node_modules/dynalite" ]; then
    cp "$npm_src/package.json" "$npm_src/package-lock.json" "$EMU_DIR/node/" || return 1
    npm ci --prefix "$EMU_DIR/node" --no-audit --no-fund --loglevel=error || return 1
  fi
}

_emu_wait_http() { # NAME URL [TIMEOUT_S] — any HTTP answer counts
  local name=$1 url=$2 t=${3:-20} i=0
  until curl -s -o /dev/null --max-time 1 "$url"; do
    i=$((i + 1))
    if ! kill -0 "$(cat "$EMU_RUN/$name.pid")" 2>/dev/null; then
      echo "emulator $name exited; log:" >&2
      tail -20 "$EMU_RUN/$name.log" >&2
      return 1
    fi
    if [ "$i" -ge $((t * 10)) ]; then
      echo "emulator $name not ready after ${t}s; log:" >&2
      tail -20 "$EMU_RUN/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
}

_emu_port_free() { # NAME PORT
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$2/"; then
    echo "port $2 for $1 is already in use (another emulator run?); set EMU_PORT_* to move it" >&2
    return 1
  fi
}

_emu_bg() {
  local name=$1
  shift
  "$@" >"$EMU_RUN/$name.log" 2>&1 &
  echo $! >"$EMU_RUN/$name.pid"
}

# emu_moto_path prints moto_server's path, or nothing.
emu_moto_path() {
  if [ -n "${MOTO_SERVER:-}" ]; then
    echo "$MOTO_SERVER"
    return
  fi
  command -v moto_server 2>/dev/null || true
}

emu_start() {
  local nm moto p
  rm -rf "$EMU_RUN"
  mkdir -p "$EMU_RUN/kms-data" || return 1
  for p in "dynalite:$EMU_PORT_DYNAMODB" "fauxqs:$EMU_PORT_SQS" "kms:$EMU_PORT_KMS" "moto:$EMU_PORT_MOTO" "moto-iam:$EMU_PORT_MOTO_IAM"; do
    _emu_port_free "${p%%:*}" "${p##*:}" || return 1
  done
  nm="$EMU_DIR/node/node_modules"

  _emu_bg dynalite node "$nm/dynalite/cli.js" --host 127.0.0.1 --port "$EMU_PORT_DYNAMODB" \
    --createTableMs 0 --deleteTableMs 0 --updateTableMs 0

  # fauxqs' CLI listens on 0.0.0.0; this wrapper keeps it on loopback.
  cat >"$EMU_RUN/fauxqs-loopback.mjs" <<'JS'
import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...a) {
  if (a[0] && typeof a[0] === "object" && a[0].host === "0.0.0.0") a[0] = { ...a[0], host: "127.0.0.1" };
  return listen.apply(this, a);
};
const { startFauxqs } = await import(process.argv[2] + "/fauxqs/dist/app.js");
await startFauxqs({ port: Number(process.env.FAUXQS_PORT), logger: false });
JS
  FAUXQS_PORT="$EMU_PORT_SQS" _emu_bg fauxqs node "$EMU_RUN/fauxqs-loopback.mjs" "$nm"

  cat >"$EMU_RUN/kms-seed.yaml" <<YAML
Keys:
  Symmetric:
    Aes:
      - Metadata: {KeyId: $EMU_KMS_KEY_ID, Description: test credential key}
        BackingKeys: [5cdaead27fe7da2de47945d73cd6d79e36494e73802f3cd3869f1d2cb0b5d7a9]
Aliases:
  - {AliasName: $EMU_KMS_ALIAS, TargetKeyId: $EMU_KMS_KEY_ID}
YAML
  PORT="$EMU_PORT_KMS" KMS_REGION=us-east-1 KMS_ACCOUNT_ID=000000000000 \
    KMS_DATA_PATH="$EMU_RUN/kms-data" KMS_SEED_PATH="$EMU_RUN/kms-seed.yaml" \
    _emu_bg kms "$EMU_BIN/local-kms"

  moto=$(emu_moto_path)
  if [ -n "$moto" ]; then
    _emu_bg moto "$moto" -H 127.0.0.1 -p "$EMU_PORT_MOTO"
    # A second moto, with IAM enforcement on, for the IAM test: separate so
    # the other tests keep their unsigned "test" credentials.
    INITIAL_NO_AUTH_ACTION_COUNT="$EMU_MOTO_IAM_NO_AUTH" _emu_bg moto-iam "$moto" -H 127.0.0.1 -p "$EMU_PORT_MOTO_IAM"
  else
    echo "moto_server not found (it is preinstalled, not installable here): SSM/EC2/CloudWatch tests will skip, or fail under CI=true" >&2
  fi

  _emu_wait_http dynalite "http://127.0.0.1:$EMU_PORT_DYNAMODB/" || return 1
  _emu_wait_http fauxqs "http://127.0.0.1:$EMU_PORT_SQS/health" || return 1
  _emu_wait_http kms "http://127.0.0.1:$EMU_PORT_KMS/" || return 1
  if [ -f "$EMU_RUN/moto.pid" ]; then
    _emu_wait_http moto "http://127.0.0.1:$EMU_PORT_MOTO/moto-api/" 30 || return 1
  fi
  if [ -f "$EMU_RUN/moto-iam.pid" ]; then
    _emu_wait_http moto-iam "http://127.0.0.1:$EMU_PORT_MOTO_IAM/moto-api/" 30 || return 1
  fi

  export SEREN_TF_SCHEMA_DIR="$EMU_DIR/cdktf/package/lib"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_SESSION_TOKEN
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$EMU_PORT_DYNAMODB"
  export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$EMU_PORT_SQS"
  export AWS_ENDPOINT_URL_KMS="http://127.0.0.1:$EMU_PORT_KMS"
  export SEREN_TEST_KMS_KEY_ID="$EMU_KMS_ALIAS"
  # Tests that run Lambda bootstraps start their own RIE (one per function).
  export SEREN_TEST_RIE="$EMU_BIN/aws-lambda-rie"
  if [ -f "$EMU_RUN/moto.pid" ]; then
    export AWS_ENDPOINT_URL_SSM="http://127.0.0.1:$EMU_PORT_MOTO"
    export AWS_ENDPOINT_URL_EC2="http://127.0.0.1:$EMU_PORT_MOTO"
    export AWS_ENDPOINT_URL_CLOUDWATCH="http://127.0.0.1:$EMU_PORT_MOTO"
    export AWS_ENDPOINT_URL_CLOUDWATCH_LOGS="http://127.0.0.1:$EMU_PORT_MOTO"
    # moto speaks awsjson/query, not the CBOR the current cloudwatch client
    # sends; cwtelemetry switches protocol only when this is set.
    export SEREN_CLOUDWATCH_PROTOCOL=awsjson
  fi
  if [ -f "$EMU_RUN/moto-iam.pid" ]; then
    export SEREN_TEST_MOTO_IAM_ENDPOINT="http://127.0.0.1:$EMU_PORT_MOTO_IAM"
    export SEREN_TEST_MOTO_IAM_NO_AUTH="$EMU_MOTO_IAM_NO_AUTH"
  fi
}

# emu_start_lambda NAME BOOTSTRAP [RIE_PORT RUNTIME_PORT] — one RIE per
# function; it serves one invocation at a time (concurrent invokes crash it).
# Exports LAMBDA_INVOKE_URL_<NAME> (upper-cased).
emu_start_lambda() {
  local name=$1 bootstrap=$2 port=${3:-$EMU_PORT_RIE} rport=${4:-$EMU_PORT_RIE_RUNTIME} var
  _emu_port_free "rie-$name" "$port" || return 1
  _emu_bg "rie-$name" "$EMU_BIN/aws-lambda-rie" --runtime-interface-emulator-address "127.0.0.1:$port" \
    --runtime-api-address "127.0.0.1:$rport" "$bootstrap"
  _emu_wait_http "rie-$name" "http://127.0.0.1:$port/" || return 1
  var="LAMBDA_INVOKE_URL_$(echo "$name" | tr '[:lower:]-' '[:upper:]_')"
  export "$var=http://127.0.0.1:$port/2015-03-31/functions/function/invocations"
}

# emu_stop: safe under `set -e` and from an EXIT trap; kills only the PIDs
# it started.
emu_stop() {
  local f pid
  for f in "$EMU_RUN"/*.pid; do
    [ -e "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
  done
  for f in "$EMU_RUN"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 25); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}
