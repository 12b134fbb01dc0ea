package selection

import (
	"strings"
	"testing"

	pgq "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// allowedNodes are the parse-tree node kinds an accepted predicate may
// contain (below the WHERE clause), checked independently of checkExpr.
var allowedNodes = setOf(
	"A_Const", "Integer", "Float", "Boolean", "String", "BitString", "ColumnRef",
	"A_Expr", "List", "BoolExpr", "NullTest", "BooleanTest", "CaseExpr", "CaseWhen",
	"CoalesceExpr", "MinMaxExpr", "A_ArrayExpr", "TypeCast", "TypeName", "FuncCall",
	"NamedArgExpr", "SQLValueFunction", "Node",
)

// FuzzPredicate: no input panics; an accepted predicate re-emits to text
// that is accepted again unchanged, and contains only allowed node kinds
// and only allowed, pg_catalog-qualified functions.
func FuzzPredicate(f *testing.F) {
	for _, s := range []string{
		"status <> 'archived'", "x = E'a\\'b'", "body = $$ ) $$", "a = 1 -- c",
		"lower(x) like 'a%' and extract(year from t) = 2024", "x in (1, 2) or y between 1 and 2",
		"case when a then b else c end", "pg_sleep(1) is null", "exists (select 1)",
		"x = 1; select 1", "t > now() - interval '1 day'", "x::int[] @> '{1}'",
		"make_interval(days => 1) < y", "x collate \"C\" = 'a'", "$1 = x", "coalesce(a, nullif(b, 1))",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := checkPredicate(in)
		if err != nil {
			return
		}
		again, err := checkPredicate(out)
		if err != nil || again != out {
			t.Fatalf("re-emitted %q from %q is not stable: %q, %v", out, in, again, err)
		}
		tree, err := pgParse(wrapPrefix + out)
		if err != nil {
			t.Fatalf("re-emitted %q does not parse: %v", out, err)
		}
		where := tree.GetStmts()[0].GetStmt().GetSelectStmt().GetWhereClause()
		walkTree(where.ProtoReflect(), func(m protoreflect.Message) {
			name := string(m.Descriptor().Name())
			if !allowedNodes[name] {
				t.Fatalf("accepted %q (re-emitted %q) contains a %s", in, out, name)
			}
			if fc, ok := m.Interface().(*pgq.FuncCall); ok {
				parts := fc.GetFuncname()
				if len(parts) != 2 || parts[0].GetString_().GetSval() != "pg_catalog" || !allowedFunctions[parts[1].GetString_().GetSval()] {
					t.Fatalf("accepted %q (re-emitted %q) calls %v", in, out, parts)
				}
			}
			if cr, ok := m.Interface().(*pgq.ColumnRef); ok {
				if len(cr.GetFields()) != 1 || systemColumns[strings.ToLower(cr.GetFields()[0].GetString_().GetSval())] {
					t.Fatalf("accepted %q (re-emitted %q) references %v", in, out, cr.GetFields())
				}
			}
		})
	})
}

func walkTree(m protoreflect.Message, visit func(protoreflect.Message)) {
	visit(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				walkTree(v.List().Get(i).Message(), visit)
			}
		case !fd.IsMap() && fd.Message() != nil:
			walkTree(v.Message(), visit)
		}
		return true
	})
}
