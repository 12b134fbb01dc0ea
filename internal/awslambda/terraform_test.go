package awslambda_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
)

// Since `terraform validate` cannot download the provider here, this
// checks what it would: every reference in deploy/aws/terraform resolves
// (resources, data sources, variables, locals), and every attribute and
// block name of a resource or data source, and every attribute read from
// one, exists in the AWS provider's schema. The schema comes from
// @cdktf/provider-aws (generated from hashicorp/aws 5.x; pinned and
// unpacked by scripts/emulators.sh, SEREN_TF_SCHEMA_DIR): each type's
// lib/<name>/index.js names its arguments and blocks in its toTerraform
// functions and its readable attributes in get*Attribute calls.

// metaArguments may appear in any resource or data block.
var metaArguments = map[string]bool{"count": true, "for_each": true, "depends_on": true, "provider": true,
	"lifecycle": true, "provisioner": true, "connection": true, "dynamic": true}

var (
	schemaArgRe  = regexp.MustCompile(`\b([a-z][a-z0-9_]*): (?:cdktf\.|[a-zA-Z0-9]+ToTerraform\()`)
	schemaAttrRe = regexp.MustCompile(`(?:get[A-Za-z]*Attribute|interpolationForAttribute)\('([a-z0-9_]+)'\)`)
	schemaTypeRe = regexp.MustCompile(`terraformResourceType: '([a-z0-9_]+)'`)
)

type tfSchema struct {
	dir   string
	cache map[string]map[string]bool
}

// names returns every argument, block and attribute name of a resource
// (data=false) or data source type, or nil when the provider has no such type.
func (s *tfSchema) names(t *testing.T, typ string, data bool) map[string]bool {
	t.Helper()
	key := typ
	dir := strings.ReplaceAll(strings.TrimPrefix(typ, "aws_"), "_", "-")
	if data {
		key, dir = "data."+typ, "data-aws-"+dir
	}
	if n, ok := s.cache[key]; ok {
		return n
	}
	src, err := os.ReadFile(filepath.Join(s.dir, dir, "index.js"))
	if err != nil {
		s.cache[key] = nil
		return nil
	}
	if m := schemaTypeRe.FindSubmatch(src); m == nil || string(m[1]) != typ {
		s.cache[key] = nil
		return nil
	}
	n := map[string]bool{"id": true}
	for _, m := range schemaArgRe.FindAllSubmatch(src, -1) {
		n[string(m[1])] = true
	}
	for _, m := range schemaAttrRe.FindAllSubmatch(src, -1) {
		n[string(m[1])] = true
	}
	s.cache[key] = n
	return n
}

func TestTerraformReferencesAndProviderSchema(t *testing.T) {
	dir := os.Getenv("SEREN_TF_SCHEMA_DIR")
	if dir == "" {
		if os.Getenv(awstest.ElsewhereVar) == "elsewhere" {
			t.Skip("SEREN_TF_SCHEMA_DIR not set (" + awstest.ElsewhereVar + "=elsewhere: scripts/test-aws.sh runs this)")
		}
		if awstest.InCI() {
			t.Fatal("SEREN_TF_SCHEMA_DIR is not set: run through scripts/test-aws.sh (scripts/emulators.sh installs @cdktf/provider-aws)")
		}
		t.Skip("SEREN_TF_SCHEMA_DIR not set (scripts/test-aws.sh sets it)")
	}
	schema := &tfSchema{dir: dir, cache: map[string]map[string]bool{}}
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy/aws/terraform/*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Terraform files: %v", err)
	}

	type block struct {
		file string
		body *hclsyntax.Body
		typ  string // resource or data source type; "" for others
		data bool
	}
	declared := map[string]bool{} // "var.x", "local.x", "aws_t.n", "data.aws_t.n"
	var blocks []block
	var exprs []struct {
		file string
		expr hclsyntax.Expression
	}
	var walkExprs func(file string, body *hclsyntax.Body)
	var currentVariable *hclsyntax.Body
	iterators := map[string]bool{} // dynamic block labels: their iterator variables
	walkExprs = func(file string, body *hclsyntax.Body) {
		for n, a := range body.Attributes {
			if n == "type" && body == currentVariable {
				continue // a variable's type constraint is not a reference
			}
			exprs = append(exprs, struct {
				file string
				expr hclsyntax.Expression
			}{file, a.Expr})
		}
		for _, b := range body.Blocks {
			if b.Type == "dynamic" && len(b.Labels) == 1 {
				iterators[b.Labels[0]] = true
			}
			walkExprs(file, b.Body)
		}
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, diags := hclsyntax.ParseConfig(src, f, hcl.Pos{Line: 1, Column: 1})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", f, diags)
		}
		body := file.Body.(*hclsyntax.Body)
		name := filepath.Base(f)
		for _, b := range body.Blocks {
			currentVariable = nil
			switch b.Type {
			case "variable":
				currentVariable = b.Body
				declared["var."+b.Labels[0]] = true
			case "locals":
				for n := range b.Body.Attributes {
					if declared["local."+n] {
						t.Errorf("%s: local.%s defined twice", name, n)
					}
					declared["local."+n] = true
				}
			case "resource":
				declared[b.Labels[0]+"."+b.Labels[1]] = true
				blocks = append(blocks, block{name, b.Body, b.Labels[0], false})
			case "data":
				declared["data."+b.Labels[0]+"."+b.Labels[1]] = true
				blocks = append(blocks, block{name, b.Body, b.Labels[0], true})
			}
			walkExprs(name, b.Body)
		}
	}

	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, strings.TrimSpace(fmt.Sprintf(format, args...)))
	}

	// Argument and block names of every resource and data block.
	var checkBody func(file, typ string, names map[string]bool, body *hclsyntax.Body, top bool)
	checkBody = func(file, typ string, names map[string]bool, body *hclsyntax.Body, top bool) {
		for n, a := range body.Attributes {
			if top && metaArguments[n] {
				continue
			}
			if !names[n] {
				bad("%s:%d: %s has no argument %q", file, a.SrcRange.Start.Line, typ, n)
			}
		}
		for _, b := range body.Blocks {
			if b.Type == "dynamic" && len(b.Labels) == 1 {
				if !names[b.Labels[0]] {
					bad("%s:%d: %s has no block %q", file, b.TypeRange.Start.Line, typ, b.Labels[0])
				}
				for _, c := range b.Body.Blocks {
					if c.Type == "content" {
						checkBody(file, typ, names, c.Body, false)
					}
				}
				continue
			}
			if top && metaArguments[b.Type] {
				continue
			}
			if !names[b.Type] {
				bad("%s:%d: %s has no block %q", file, b.TypeRange.Start.Line, typ, b.Type)
			}
			checkBody(file, typ, names, b.Body, false)
		}
	}
	for _, b := range blocks {
		names := schema.names(t, b.typ, b.data)
		if names == nil {
			kind := "resource"
			if b.data {
				kind = "data source"
			}
			bad("%s: the AWS provider has no %s type %s", b.file, kind, b.typ)
			continue
		}
		checkBody(b.file, b.typ, names, b.body, true)
	}

	// Every reference resolves; attributes read from resources exist.
	for _, e := range exprs {
		for _, tr := range e.expr.Variables() {
			root := tr.RootName()
			line := tr.SourceRange().Start.Line
			step := func(i int) string {
				if i < len(tr) {
					if a, ok := tr[i].(hcl.TraverseAttr); ok {
						return a.Name
					}
				}
				return ""
			}
			// attrAfter is the first attribute name after position i
			// (skipping [index] and splat steps).
			attrAfter := func(i int) string {
				for ; i < len(tr); i++ {
					if a, ok := tr[i].(hcl.TraverseAttr); ok {
						return a.Name
					}
				}
				return ""
			}
			switch root {
			case "var", "local":
				if !declared[root+"."+step(1)] {
					bad("%s:%d: %s.%s is not declared", e.file, line, root, step(1))
				}
			case "data":
				typ, name := step(1), step(2)
				if !declared["data."+typ+"."+name] {
					bad("%s:%d: data.%s.%s is not declared", e.file, line, typ, name)
					continue
				}
				if a := attrAfter(3); a != "" {
					if names := schema.names(t, typ, true); names != nil && !names[a] {
						bad("%s:%d: data source %s has no attribute %q", e.file, line, typ, a)
					}
				}
			case "path", "terraform", "each", "count", "self":
			default:
				if iterators[root] {
					continue
				}
				if !strings.HasPrefix(root, "aws_") {
					bad("%s:%d: unknown reference %s", e.file, line, root)
					continue
				}
				name := step(1)
				if !declared[root+"."+name] {
					bad("%s:%d: resource %s.%s is not declared", e.file, line, root, name)
					continue
				}
				if a := attrAfter(2); a != "" {
					if names := schema.names(t, root, false); names != nil && !names[a] {
						bad("%s:%d: resource %s has no attribute %q", e.file, line, root, a)
					}
				}
			}
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}
