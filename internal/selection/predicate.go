package selection

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	pgq "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A row predicate is parsed by PostgreSQL's own parser (libpg_query),
// checked node by node against a small grammar of side-effect-free
// expressions, and re-emitted from the parse tree: the SQL that runs is the
// tree that was checked, never the text the user typed. The grammar is
// documented in docs/selection.md.

// maxPredicateLen bounds a predicate's text (an IN list of a few hundred
// values fits). It also bounds the depth of what the parser sees (at
// least two bytes per level), well inside what the WebAssembly build of
// the parser can recurse.
const maxPredicateLen = 4 << 10

// maxPredicateDepth bounds the nesting of a predicate's expression tree.
const maxPredicateDepth = 64

// wrapPrefix is the statement a predicate is parsed in; the checker
// verifies that the predicate filled only its WHERE clause.
const wrapPrefix = "SELECT 1 WHERE "

// SessionSetup is run (inside the transaction, hence LOCAL) before a
// predicate is: it pins the literal rules the predicate was checked under,
// whatever the connection's options said.
const SessionSetup = "SET LOCAL standard_conforming_strings = on"

// allowedFunctions are the functions a predicate may call: built-in,
// side-effect free, and cheap. Calls are re-emitted schema-qualified
// (pg_catalog.lower), so a same-named function elsewhere on the
// search_path is never called.
var allowedFunctions = setOf(
	// date and time
	"now", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
	"date_trunc", "date_part", "extract", "date_bin", "age", "isfinite", "timezone",
	"make_interval", "make_date", "make_time", "make_timestamp", "make_timestamptz",
	"justify_days", "justify_hours", "justify_interval",
	"to_timestamp", "to_date", "to_char", "to_number",
	// text
	"lower", "upper", "initcap", "length", "char_length", "character_length",
	"octet_length", "bit_length", "substr", "substring", "left", "right",
	"position", "strpos", "starts_with", "replace", "translate", "btrim", "ltrim",
	"rtrim", "concat", "concat_ws", "split_part", "reverse", "md5", "ascii", "chr",
	"to_hex", "overlay", "normalize", "is_normalized", "like_escape",
	"similar_to_escape", "regexp_replace", "regexp_like", "regexp_match",
	"regexp_count", "regexp_instr", "regexp_substr",
	// math
	"abs", "round", "trunc", "ceil", "ceiling", "floor", "sign", "mod", "div",
	"power", "pow", "sqrt", "cbrt", "exp", "ln", "log", "log10", "gcd", "lcm",
	"pi", "degrees", "radians", "width_bucket",
	// nulls
	"num_nulls", "num_nonnulls",
)

// allowedTypes are the types a predicate may cast to (names as the parser
// produces them; re-emitted schema-qualified).
var allowedTypes = setOf(
	"bool", "boolean", "int2", "smallint", "int4", "integer", "int", "int8", "bigint",
	"numeric", "decimal", "float4", "real", "float8", "text", "varchar", "bpchar",
	"char", "name", "date", "time", "timetz", "timestamp", "timestamptz", "interval",
	"uuid", "json", "jsonb", "inet", "cidr", "bytea", "bit", "varbit",
)

// allowedOperators are the operator symbols a predicate may use.
var allowedOperators = setOf(
	"=", "<>", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "^", "||",
	"~~", "!~~", "~~*", "!~~*", "~", "~*", "!~", "!~*",
	"@>", "<@", "&&", "->", "->>", "#>", "#>>", "?", "?|", "?&",
)

// systemColumns may not be referenced.
var systemColumns = setOf("ctid", "xmin", "xmax", "cmin", "cmax", "tableoid")

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// checkPredicate parses p as one SQL expression, checks it against the
// predicate grammar, and returns it as re-emitted from the parse tree.
func checkPredicate(p string) (string, error) {
	p = strings.TrimSpace(p)
	if p == "" {
		return "", errors.New("empty predicate (expected " + tableFilterSyntax + ")")
	}
	if len(p) > maxPredicateLen {
		return "", fmt.Errorf("predicate too long (%d bytes, at most %d)", len(p), maxPredicateLen)
	}
	if strings.ContainsRune(p, 0) {
		return "", errors.New("NUL byte in predicate")
	}
	tree, err := pgParse(wrapPrefix + p)
	if err != nil {
		return "", fmt.Errorf("not a valid SQL expression: %w", err)
	}
	where, err := whereOf(tree)
	if err != nil {
		return "", err
	}
	if err := checkExpr(where, 0); err != nil {
		return "", err
	}
	out, err := pgDeparse(tree)
	if err != nil {
		return "", fmt.Errorf("re-emit predicate: %w", err)
	}
	text, ok := strings.CutPrefix(out, wrapPrefix)
	if !ok {
		return "", fmt.Errorf("re-emit predicate: unexpected form %q", out)
	}
	// The text that runs must be the tree that was checked: parse it
	// again and compare.
	again, err := pgParse(wrapPrefix + text)
	if err != nil {
		return "", fmt.Errorf("re-emitted predicate does not parse: %w", err)
	}
	if w, err := whereOf(again); err != nil {
		return "", fmt.Errorf("re-emitted predicate: %w", err)
	} else if err := checkExpr(w, 0); err != nil {
		return "", fmt.Errorf("re-emitted predicate: %w", err)
	}
	if !sameTree(tree, again) {
		return "", fmt.Errorf("re-emitted predicate %q differs from the one checked", text)
	}
	return text, nil
}

// whereOf returns the WHERE clause of tree, which must be exactly
// "SELECT 1 WHERE expr": anything else means the predicate reached beyond
// its clause (a second statement, UNION, ORDER BY, LIMIT, ...).
func whereOf(tree *pgq.ParseResult) (*pgq.Node, error) {
	if len(tree.GetStmts()) != 1 {
		return nil, errors.New("a predicate is one boolean expression, not several statements")
	}
	sel := tree.GetStmts()[0].GetStmt().GetSelectStmt()
	if sel == nil {
		return nil, errors.New("a predicate is one boolean expression")
	}
	rest := proto.Clone(sel).(*pgq.SelectStmt)
	rest.WhereClause = nil
	bare, err := pgParse("SELECT 1")
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	want := bare.GetStmts()[0].GetStmt().GetSelectStmt()
	if sel.GetWhereClause() == nil || !sameMessage(rest, want) {
		return nil, errors.New("a predicate is one boolean expression: no UNION, ORDER BY, GROUP BY, LIMIT, FOR UPDATE or other clauses")
	}
	return sel.GetWhereClause(), nil
}

// checkExpr accepts the expression grammar of a predicate and qualifies
// function and type names with pg_catalog in place.
func checkExpr(n *pgq.Node, depth int) error {
	if n == nil || n.GetNode() == nil {
		return errors.New("missing expression")
	}
	if depth > maxPredicateDepth {
		return fmt.Errorf("expression nested too deeply (more than %d levels)", maxPredicateDepth)
	}
	d := depth + 1
	switch x := n.GetNode().(type) {
	case *pgq.Node_AConst:
		return nil
	case *pgq.Node_ColumnRef:
		return checkColumnRef(x.ColumnRef)
	case *pgq.Node_AExpr:
		return checkAExpr(x.AExpr, d)
	case *pgq.Node_List:
		return checkAll(x.List.GetItems(), d)
	case *pgq.Node_BoolExpr:
		return checkAll(x.BoolExpr.GetArgs(), d)
	case *pgq.Node_NullTest:
		return checkExpr(x.NullTest.GetArg(), d)
	case *pgq.Node_BooleanTest:
		return checkExpr(x.BooleanTest.GetArg(), d)
	case *pgq.Node_CaseExpr:
		c := x.CaseExpr
		if c.GetArg() != nil {
			if err := checkExpr(c.GetArg(), d); err != nil {
				return err
			}
		}
		for _, w := range c.GetArgs() {
			cw := w.GetCaseWhen()
			if cw == nil {
				return errors.New("malformed CASE")
			}
			if err := checkExpr(cw.GetExpr(), d); err != nil {
				return err
			}
			if err := checkExpr(cw.GetResult(), d); err != nil {
				return err
			}
		}
		if c.GetDefresult() != nil {
			return checkExpr(c.GetDefresult(), d)
		}
		return nil
	case *pgq.Node_CoalesceExpr:
		return checkAll(x.CoalesceExpr.GetArgs(), d)
	case *pgq.Node_MinMaxExpr:
		return checkAll(x.MinMaxExpr.GetArgs(), d)
	case *pgq.Node_AArrayExpr:
		return checkAll(x.AArrayExpr.GetElements(), d)
	case *pgq.Node_TypeCast:
		if err := checkTypeName(x.TypeCast.GetTypeName()); err != nil {
			return err
		}
		return checkExpr(x.TypeCast.GetArg(), d)
	case *pgq.Node_FuncCall:
		return checkFuncCall(x.FuncCall, d)
	case *pgq.Node_NamedArgExpr:
		return checkExpr(x.NamedArgExpr.GetArg(), d)
	case *pgq.Node_SqlvalueFunction:
		switch x.SqlvalueFunction.GetOp() {
		case pgq.SQLValueFunctionOp_SVFOP_CURRENT_DATE,
			pgq.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pgq.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N,
			pgq.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pgq.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N,
			pgq.SQLValueFunctionOp_SVFOP_LOCALTIME, pgq.SQLValueFunctionOp_SVFOP_LOCALTIME_N,
			pgq.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pgq.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
			return nil
		}
		return errors.New("only the date/time value functions (CURRENT_DATE, CURRENT_TIMESTAMP, LOCALTIMESTAMP, ...) are allowed, not CURRENT_USER and the like")
	case *pgq.Node_SubLink:
		return errors.New("subqueries are not allowed in a predicate")
	case *pgq.Node_ParamRef:
		return errors.New("parameters ($1) are not allowed in a predicate")
	case *pgq.Node_CollateClause:
		return errors.New("COLLATE is not allowed in a predicate (compare lower() or upper() values instead)")
	case *pgq.Node_RowExpr:
		return errors.New("row constructors are not allowed in a predicate")
	case *pgq.Node_AIndirection:
		return errors.New("subscripts and field selection are not allowed in a predicate")
	}
	name := strings.TrimPrefix(fmt.Sprintf("%T", n.GetNode()), "*pg_query.Node_")
	return fmt.Errorf("%s is not allowed in a predicate (allowed: columns, constants, operators, AND/OR/NOT, CASE, casts, IN, BETWEEN, LIKE, IS [NOT] NULL and the functions listed in docs/selection.md)", name)
}

func checkAll(nodes []*pgq.Node, depth int) error {
	for _, n := range nodes {
		if err := checkExpr(n, depth); err != nil {
			return err
		}
	}
	return nil
}

func checkColumnRef(c *pgq.ColumnRef) error {
	f := c.GetFields()
	if len(f) != 1 || f[0].GetString_() == nil {
		if slices.ContainsFunc(f, func(n *pgq.Node) bool { return n.GetAStar() != nil }) {
			return errors.New("* is not allowed in a predicate")
		}
		return errors.New("a column is named by itself (col or \"Col\"), not qualified (t.col)")
	}
	name := f[0].GetString_().GetSval()
	if systemColumns[name] {
		return fmt.Errorf("system column %s is not allowed in a predicate", name)
	}
	return nil
}

func checkAExpr(a *pgq.A_Expr, depth int) error {
	switch a.GetKind() {
	case pgq.A_Expr_Kind_AEXPR_BETWEEN, pgq.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pgq.A_Expr_Kind_AEXPR_BETWEEN_SYM, pgq.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		// the name is the grammar's ("BETWEEN"), not an operator
	case pgq.A_Expr_Kind_AEXPR_OP, pgq.A_Expr_Kind_AEXPR_OP_ANY, pgq.A_Expr_Kind_AEXPR_OP_ALL,
		pgq.A_Expr_Kind_AEXPR_DISTINCT, pgq.A_Expr_Kind_AEXPR_NOT_DISTINCT, pgq.A_Expr_Kind_AEXPR_NULLIF,
		pgq.A_Expr_Kind_AEXPR_IN, pgq.A_Expr_Kind_AEXPR_LIKE, pgq.A_Expr_Kind_AEXPR_ILIKE,
		pgq.A_Expr_Kind_AEXPR_SIMILAR:
		op, err := catalogName(a.GetName(), "operator")
		if err != nil {
			return err
		}
		if !allowedOperators[op] {
			return fmt.Errorf("operator %s is not allowed in a predicate", op)
		}
	default:
		return fmt.Errorf("expression kind %s is not allowed in a predicate", a.GetKind())
	}
	if a.GetLexpr() != nil {
		if err := checkExpr(a.GetLexpr(), depth); err != nil {
			return err
		}
	}
	return checkExpr(a.GetRexpr(), depth)
}

func checkFuncCall(f *pgq.FuncCall, depth int) error {
	name, err := catalogName(f.GetFuncname(), "function")
	if err != nil {
		return err
	}
	if !allowedFunctions[name] {
		return fmt.Errorf("function %s is not allowed in a predicate (allowed functions are listed in docs/selection.md)", name)
	}
	if f.GetAggStar() || f.GetAggDistinct() || len(f.GetAggOrder()) > 0 || f.GetAggFilter() != nil ||
		f.GetAggWithinGroup() || f.GetOver() != nil || f.GetFuncVariadic() {
		return fmt.Errorf("function %s: aggregates, window functions and VARIADIC are not allowed in a predicate", name)
	}
	f.Funcname = qualified(name)
	return checkAll(f.GetArgs(), depth)
}

func checkTypeName(t *pgq.TypeName) error {
	if t == nil {
		return errors.New("missing type name")
	}
	name, err := catalogName(t.GetNames(), "type")
	if err != nil {
		return err
	}
	if !allowedTypes[name] || t.GetSetof() || t.GetPctType() {
		return fmt.Errorf("cast to %s is not allowed in a predicate (allowed types are listed in docs/selection.md)", name)
	}
	for _, m := range t.GetTypmods() {
		if m.GetAConst() == nil {
			return fmt.Errorf("type %s: modifiers must be constants", name)
		}
	}
	for _, b := range t.GetArrayBounds() {
		if b.GetInteger() == nil {
			return fmt.Errorf("type %s: malformed array bounds", name)
		}
	}
	t.Names = qualified(name)
	return nil
}

// catalogName returns the name of a function, type or operator written
// either bare or qualified with pg_catalog; any other schema is refused.
func catalogName(parts []*pgq.Node, what string) (string, error) {
	var names []string
	for _, p := range parts {
		s := p.GetString_()
		if s == nil {
			return "", fmt.Errorf("malformed %s name", what)
		}
		names = append(names, s.GetSval())
	}
	switch {
	case len(names) == 1:
		return names[0], nil
	case len(names) == 2 && names[0] == "pg_catalog":
		return names[1], nil
	case len(names) == 0:
		return "", fmt.Errorf("malformed %s name", what)
	}
	return "", fmt.Errorf("%s %s is not allowed in a predicate (only built-in, pg_catalog names)", what, strings.Join(names, "."))
}

func qualified(name string) []*pgq.Node {
	return []*pgq.Node{pgq.MakeStrNode("pg_catalog"), pgq.MakeStrNode(name)}
}

// sameTree reports whether two parse results are the same tree, ignoring
// source positions.
func sameTree(a, b *pgq.ParseResult) bool { return sameMessage(a, b) }

func sameMessage(a, b proto.Message) bool {
	a, b = proto.Clone(a), proto.Clone(b)
	stripLocations(a.ProtoReflect())
	stripLocations(b.ProtoReflect())
	return proto.Equal(a, b)
}

// stripLocations zeroes every source position (location, stmt_location,
// stmt_len) in m.
func stripLocations(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "location" || fd.Name() == "stmt_location" || fd.Name() == "stmt_len":
			m.Clear(fd)
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				stripLocations(l.Get(i).Message())
			}
		case fd.IsMap():
		case fd.Message() != nil:
			stripLocations(v.Message())
		}
		return true
	})
}
