package awslambda_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// The IAM policies as data: each role's policy is
// deploy/aws/terraform/policies/<role>.json.tpl, which Terraform renders
// (iam.tf, templatefile) and these tests read.
//
// componentOps is, per role, every AWS action its code can cause, as
// "service:Operation": the SDK calls of the packages the component runs
// (checked against the code by TestIAMOperationsMatchTheCode) plus the
// actions AWS performs with the role on the code's behalf (implied). The
// role's policy must allow exactly these actions: no fewer (the component
// would fail on a real account) and no more (least privilege).
var componentOps = map[string]struct{ code, implied []string }{
	"coordinator": {
		code: []string{
			"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query", // submit, status, cancel; owner and active indexes
			"sqs:SendMessage",                                 // enqueue the job id
			"kms:GenerateDataKey",                             // seal the credentials (envelope)
			"ssm:GetParameter",                                // the API key
			"ssm:GetParametersByPath",                         // rotation keys
			"ec2:DescribeInstances", "ec2:TerminateInstances", // cancel stops the worker
			"logs:FilterLogEvents", "logs:DescribeLogStreams", // GET /jobs/{id}/logs, scoped to the job's streams
			"cloudwatch:PutMetricData", // JobSubmitted, JobFinished{cancelled}
		},
		implied: lambdaRuntimeLogs,
	},
	"provisioner": {
		code: []string{
			"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query", // the job; active-index for the limit
			"ec2:RunInstances", "ec2:DescribeInstances", "ec2:TerminateInstances", // launch, count, stop an unrecorded worker
			"sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage", // ack, back off, re-send
			"cloudwatch:PutMetricData",
		},
		implied: append([]string{
			"ec2:CreateTags",                               // RunInstances with TagSpecifications
			"iam:PassRole",                                 // RunInstances with the worker instance profile
			"sqs:ReceiveMessage", "sqs:GetQueueAttributes", // the Lambda event source mappings (queue and DLQ)
		}, lambdaRuntimeLogs...),
	},
	"reaper": {
		code: []string{
			"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query",
			"ec2:DescribeInstances", "ec2:TerminateInstances",
			"sqs:SendMessage",          // re-queue a job whose spot worker was interrupted
			"cloudwatch:PutMetricData", // JobFinished of the jobs it ends
		},
		implied: lambdaRuntimeLogs,
	},
	"worker": {
		code: []string{
			"dynamodb:GetItem", "dynamodb:UpdateItem",
			"kms:Decrypt",
			"logs:CreateLogStream", "logs:PutLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams",
			"cloudwatch:PutMetricData",
			"ec2:TerminateInstances", // itself, when done
		},
		// The CloudWatch agent ships the boot/stop lines with the role.
		implied: []string{"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"},
	},
}

// lambdaRuntimeLogs: the Lambda runtime writes the function's own log.
var lambdaRuntimeLogs = []string{"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}

// setupOnlyOps are SDK calls in the backend packages that no deployed
// component makes: helpers that create resources for tests and local use
// (Terraform creates them on AWS), and the SQS receive loop of `serve`.
var setupOnlyOps = map[string]string{
	"dynamodb:CreateTable":   "dynamostore.CreateTable (tests, local)",
	"dynamodb:DescribeTable": "dynamostore.CreateTable's TableExists waiter",
	"sqs:CreateQueue":        "sqsqueue.CreateQueueWithDLQ (tests, local)",
	"sqs:GetQueueAttributes": "sqsqueue.CreateQueueWithDLQ reads the DLQ ARN",
	"sqs:ReceiveMessage":     "sqsqueue.Receive: serve's scheduler (Lambda's event source mapping receives instead)",
	"logs:CreateLogGroup":    "cwlog.CreateGroup (tests, local)",
}

// scannedPackages are the packages whose SDK calls the components make.
var scannedPackages = []string{
	"internal/jobstore/dynamostore", "internal/queue/sqsqueue", "internal/secrets/kmskeys",
	"internal/apikeys/ssmkeys", "internal/launcher/ec2launcher", "internal/joblog/cwlog",
	"internal/telemetry/cwtelemetry", "internal/backends", "internal/awslambda",
	"internal/api", "internal/service", "internal/worker",
}

// sdkClients maps an SDK service import path to its IAM prefix and client.
var sdkClients = map[string]struct {
	prefix string
	client any
}{
	"github.com/aws/aws-sdk-go-v2/service/dynamodb":       {"dynamodb", &dynamodb.Client{}},
	"github.com/aws/aws-sdk-go-v2/service/sqs":            {"sqs", &sqs.Client{}},
	"github.com/aws/aws-sdk-go-v2/service/kms":            {"kms", &kms.Client{}},
	"github.com/aws/aws-sdk-go-v2/service/ssm":            {"ssm", &ssm.Client{}},
	"github.com/aws/aws-sdk-go-v2/service/ec2":            {"ec2", &ec2.Client{}},
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch":     {"cloudwatch", &cloudwatch.Client{}},
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs": {"logs", &cloudwatchlogs.Client{}},
}

// waiterOps: the operation each waiter polls.
var waiterOps = map[string]string{"TableExists": "DescribeTable", "TableNotExists": "DescribeTable",
	"InstanceTerminated": "DescribeInstances", "InstanceRunning": "DescribeInstances"}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// codeOps scans the non-test Go files of dir for calls of SDK client
// operations (x.Op(...) where Op is a method of a service client whose
// package the file imports, and NewOpPaginator/NewXWaiter).
func codeOps(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ops := map[string]bool{}
	methods := map[string]map[string]bool{} // prefix -> operations
	for _, c := range sdkClients {
		m := map[string]bool{}
		typ := reflect.TypeOf(c.client)
		for i := 0; i < typ.NumMethod(); i++ {
			if n := typ.Method(i).Name; n != "Options" {
				m[n] = true
			}
		}
		methods[c.prefix] = m
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		var prefixes []string
		for _, imp := range file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if c, ok := sdkClients[p]; ok {
				prefixes = append(prefixes, c.prefix)
			}
		}
		if len(prefixes) == 0 {
			continue
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			name := sel.Sel.Name
			for _, p := range prefixes {
				switch {
				case methods[p][name]:
					ops[p+":"+name] = true
				case strings.HasPrefix(name, "New") && strings.HasSuffix(name, "Paginator") && methods[p][strings.TrimSuffix(strings.TrimPrefix(name, "New"), "Paginator")]:
					ops[p+":"+strings.TrimSuffix(strings.TrimPrefix(name, "New"), "Paginator")] = true
				case strings.HasPrefix(name, "New") && strings.HasSuffix(name, "Waiter"):
					if op, ok := waiterOps[strings.TrimSuffix(strings.TrimPrefix(name, "New"), "Waiter")]; ok && methods[p][op] {
						ops[p+":"+op] = true
					}
				}
			}
			return true
		})
	}
	return ops
}

// TestIAMOperationsMatchTheCode: every SDK operation the components'
// packages call is in some component's list (or is setup-only), and every
// listed code operation is called somewhere: the lists cannot drift from
// the code.
func TestIAMOperationsMatchTheCode(t *testing.T) {
	root := repoRoot(t)
	inCode := map[string]bool{}
	for _, pkg := range scannedPackages {
		for op := range codeOps(t, filepath.Join(root, pkg)) {
			inCode[op] = true
		}
	}
	declared := map[string]bool{}
	for _, c := range componentOps {
		for _, op := range c.code {
			declared[op] = true
		}
	}
	for op := range inCode {
		if !declared[op] && setupOnlyOps[op] == "" {
			t.Errorf("the code calls %s, which no component's list (componentOps) or setupOnlyOps names: add it to the component that calls it and to its policy", op)
		}
	}
	for op := range declared {
		if !inCode[op] {
			t.Errorf("%s is listed as called by the code, but no scanned package calls it: remove it from componentOps and the policy", op)
		}
	}
	for op := range setupOnlyOps {
		if !inCode[op] && !declared[op] {
			t.Errorf("setup-only %s is not in the code any more", op)
		}
	}
}

// policyVars are stand-ins for the values Terraform passes the templates.
func policyVars(t *testing.T, root string) map[string]string {
	t.Helper()
	// The template variables Terraform passes (iam.tf iam_common_vars,
	// plus own_log_group_arn): a template may use no other.
	src, err := os.ReadFile(filepath.Join(root, "deploy/aws/terraform/iam.tf"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)iam_common_vars = \{(.*?)\n  \}`).FindSubmatch(src)
	if block == nil {
		t.Fatal("iam.tf: no iam_common_vars block")
	}
	vars := map[string]string{"own_log_group_arn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/own"}
	for _, m := range regexp.MustCompile(`(?m)^    ([a-z0-9_]+)\s*=`).FindAllSubmatch(block[1], -1) {
		name := string(m[1])
		switch {
		case strings.HasSuffix(name, "_resources"):
			vars[name] = `["arn:aws:ec2:us-east-1:123456789012:volume/*"]`
		case strings.HasSuffix(name, "_arn"), name == "ec2_arn_prefix":
			vars[name] = "arn:aws:test:us-east-1:123456789012:" + name
		default:
			vars[name] = "test-" + name
		}
	}
	return vars
}

var templateVar = regexp.MustCompile(`\$\$\{|\$\{([^}]*)\}`)

// renderPolicy renders a template as templatefile does for the simple
// interpolations the templates use (${name}; $${ is a literal ${).
func renderPolicy(t *testing.T, path string, vars map[string]string) map[string]any {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(src), "%{") {
		t.Fatalf("%s: template directives (%%{) are not supported by this test; use variables", path)
	}
	out := templateVar.ReplaceAllStringFunc(string(src), func(m string) string {
		if m == "$${" {
			return "${"
		}
		name := m[2 : len(m)-1]
		v, ok := vars[name]
		if !ok {
			t.Errorf("%s: ${%s} is not a variable iam.tf passes", path, name)
		}
		return v
	})
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%s does not render to JSON: %v", path, err)
	}
	return doc
}

// policyActions lists the actions a rendered policy allows (all its
// statements are Allow statements with explicit actions).
func policyActions(t *testing.T, name string, doc map[string]any) map[string]bool {
	t.Helper()
	acts := map[string]bool{}
	stmts, _ := doc["Statement"].([]any)
	for _, s := range stmts {
		st := s.(map[string]any)
		if st["Effect"] != "Allow" {
			t.Errorf("%s: statement %v is not an Allow", name, st["Sid"])
		}
		if _, ok := st["NotAction"]; ok {
			t.Errorf("%s: statement %v uses NotAction", name, st["Sid"])
		}
		list, _ := st["Action"].([]any)
		for _, a := range list {
			s := a.(string)
			if strings.Contains(s, "*") {
				t.Errorf("%s: wildcard action %s", name, s)
			}
			acts[s] = true
		}
	}
	return acts
}

func TestIAMPoliciesAllowExactlyWhatTheCodeNeeds(t *testing.T) {
	root := repoRoot(t)
	vars := policyVars(t, root)
	for role, ops := range componentOps {
		doc := renderPolicy(t, filepath.Join(root, "deploy/aws/terraform/policies", role+".json.tpl"), vars)
		allowed := policyActions(t, role, doc)
		need := map[string]bool{}
		for _, op := range append(append([]string(nil), ops.code...), ops.implied...) {
			need[op] = true
		}
		var missing, extra []string
		for op := range need {
			if !allowed[op] {
				missing = append(missing, op)
			}
		}
		for op := range allowed {
			if !need[op] {
				extra = append(extra, op)
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		if len(missing) > 0 {
			t.Errorf("%s policy lacks %v, which its code needs", role, missing)
		}
		if len(extra) > 0 {
			t.Errorf("%s policy allows %v, which its code does not use", role, extra)
		}
	}
}

// The conditions that carry the security properties: EC2 writes scoped to
// this deployment's workers, credentials only with a job_id context, and a
// worker terminating only itself.
func TestIAMPolicyConditions(t *testing.T) {
	root := repoRoot(t)
	vars := policyVars(t, root)
	for role := range componentOps {
		doc := renderPolicy(t, filepath.Join(root, "deploy/aws/terraform/policies", role+".json.tpl"), vars)
		for _, s := range doc["Statement"].([]any) {
			st := s.(map[string]any)
			acts := map[string]bool{}
			for _, a := range st["Action"].([]any) {
				acts[a.(string)] = true
			}
			cond, _ := json.Marshal(st["Condition"])
			c := string(cond)
			if acts["ec2:TerminateInstances"] && !strings.Contains(c, `"ec2:ResourceTag/SerenDeployment":"`+vars["deployment"]+`"`) {
				t.Errorf("%s: TerminateInstances is not scoped to this deployment's tag: %s", role, c)
			}
			if acts["ec2:RunInstances"] && st["Sid"] == "RunWorkerInstance" && !strings.Contains(c, `"aws:RequestTag/SerenDeployment":"`+vars["deployment"]+`"`) {
				t.Errorf("%s: RunInstances does not require the deployment tag: %s", role, c)
			}
			if (acts["kms:Decrypt"] || acts["kms:GenerateDataKey"]) && !strings.Contains(c, "kms:EncryptionContext:job_id") {
				t.Errorf("%s: KMS use without the job_id encryption context: %s", role, c)
			}
			if role == "worker" && acts["ec2:TerminateInstances"] && !strings.Contains(c, `"aws:ARN":"${ec2:SourceInstanceARN}"`) {
				t.Errorf("worker may terminate other instances than itself: %s", c)
			}
		}
	}
}
