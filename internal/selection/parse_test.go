package selection

import (
	"strings"
	"testing"
)

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in   string
		want string // canonical form, or "" when an error is expected
		err  string // substring of the error
	}{
		{in: "6 months", want: "6 months"},
		{in: "1 month", want: "1 month"},
		{in: "1 months", want: "1 month"},
		{in: "1 year", want: "1 year"},
		{in: "2 YEARS", want: "2 years"},
		{in: "  90 days ", want: "90 days"},
		{in: "90d", want: "90 days"},
		{in: "6mo", want: "6 months"},
		{in: "1y", want: "1 year"},
		{in: "12h", want: "12 hours"},
		{in: "30 min", want: "30 minutes"},
		{in: "45s", want: "45 seconds"},
		{in: "2w", want: "2 weeks"},
		{in: "3 weeks", want: "3 weeks"},
		{in: "10 seconds", want: "10 seconds"},
		{in: "1 minute", want: "1 minute"},
		{in: "6 fortnights", err: `unknown unit "fortnights" (use seconds, minutes, hours, days, weeks, months or years)`},
		{in: "6 months ago", err: `unknown unit "months ago"`},
		{in: "", err: "missing window"},
		{in: "months", err: "positive whole number"},
		{in: "-3 days", err: "positive whole number"},
		{in: "0 days", err: "must be positive"},
		{in: "1.5 days", err: "whole number of units"},
		{in: "6", err: "missing unit after 6"},
		{in: "5m", err: `ambiguous unit "m"`},
		{in: "99999999999999999999 years", err: "too large"},
		{in: "2000000 days", err: "too large"},
		{in: "6 months'; drop table x", err: "unknown unit"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			w, err := parseWindow(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseWindow(%q) = %v, %v; want error containing %q", tt.in, w, err, tt.err)
				}
				return
			}
			if err != nil || w.String() != tt.want {
				t.Fatalf("parseWindow(%q) = %q, %v; want %q", tt.in, w, err, tt.want)
			}
		})
	}
}

func TestCheckPredicate(t *testing.T) {
	tests := []struct {
		in  string
		err string // "" = accepted
	}{
		{in: "status <> 'archived'"},
		{in: "created_at::date > '2024-01-01'"},
		{in: `"Weird (name" = 1`},
		{in: "note <> 'it''s (fine'"},
		{in: `note = E'a\'b ('`},
		{in: "body = $$ ) $$"},
		{in: "body = $tag$ ) $tag$ and (x)"},
		{in: "(a = 1 or b = 2) and c in (1, 2)"},
		{in: "price > $1"}, // not a dollar quote; PostgreSQL will reject it, we need not
		{in: "", err: "empty predicate"},
		{in: "   ", err: "empty predicate"},
		{in: "true; drop table users", err: `";" is not allowed`},
		{in: "note = 'a;b'", err: `";" is not allowed`},
		{in: "true) union select 1 from x where (true", err: "unbalanced parentheses"},
		{in: "(true", err: "unbalanced parentheses"},
		{in: "x = 1 -- rest", err: "comments are not allowed"},
		{in: "x = 1 /* rest */", err: "comments are not allowed"},
		{in: "x = 'open", err: "unterminated string"},
		{in: `"open = 1`, err: "unterminated quoted identifier"},
		{in: "x = $a$ open", err: "unterminated dollar-quoted"},
		{in: "x = '--' and y = '/*'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := checkPredicate(tt.in)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("checkPredicate(%q) = %v; want accepted", tt.in, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("checkPredicate(%q) = %v; want error containing %q", tt.in, err, tt.err)
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		in   string
		want tableRef
		err  string
	}{
		{in: "users", want: tableRef{schema: "public", table: "users"}},
		{in: "app.users", want: tableRef{db: "app", schema: "public", table: "users"}},
		{in: "app.sales.orders", want: tableRef{db: "app", schema: "sales", table: "orders"}},
		{in: " app . Users ", want: tableRef{db: "app", schema: "public", table: "Users"}},
		{in: `"my.db"."my.table"`, want: tableRef{db: "my.db", schema: "public", table: "my.table"}},
		{in: `app."a""b".t`, want: tableRef{db: "app", schema: `a"b`, table: "t"}},
		{in: "*.users", want: tableRef{schema: "public", table: "users"}},
		{in: "*.sales.orders", want: tableRef{schema: "sales", table: "orders"}},
		{in: `"*".users`, want: tableRef{db: "*", schema: "public", table: "users"}},
		{in: `app."*"`, want: tableRef{db: "app", schema: "public", table: "*"}},
		{in: `app." padded "`, want: tableRef{db: "app", schema: "public", table: " padded "}},
		{in: "a:b.c", want: tableRef{db: "a:b", schema: "public", table: "c"}},
		{in: "app..users", err: "empty name"},
		{in: "app.", err: "empty name"},
		{in: "a.b.c.d", err: "too many dots"},
		{in: `app."users`, err: "unterminated quoted name"},
		{in: `app.us"ers"`, err: "a quote may only wrap a whole name part"},
		{in: `app."us"ers`, err: `unexpected 'e' after a quoted name`},
		{in: `app.""`, err: "empty quoted name"},
		{in: "app.*", err: `"*" stands only for the database`},
		{in: "*", err: `"*" stands only for the database`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseRef(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseRef(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseRef(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			// The flag form parses back to the same ref.
			back, err := parseRef(got.String())
			if err != nil || back != got {
				t.Fatalf("round trip of %q via %q = %+v, %v", tt.in, got.String(), back, err)
			}
		})
	}
}

func TestTimePredicateQuotesColumn(t *testing.T) {
	tests := []struct{ col, want string }{
		{"created_at", `"created_at" >= now() - interval '6 months'`},
		{"Created At", `"Created At" >= now() - interval '6 months'`},
		{`a"b`, `"a""b" >= now() - interval '6 months'`},
	}
	for _, tt := range tests {
		if got := timePredicate(tt.col, window{n: 6, unit: "month"}); got != tt.want {
			t.Errorf("timePredicate(%q) = %s; want %s", tt.col, got, tt.want)
		}
	}
}
