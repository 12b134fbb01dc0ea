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
		in   string
		want string // re-emitted text when accepted
		err  string // "" = accepted
	}{
		{in: "status <> 'archived'", want: "status <> 'archived'"},
		{in: "created_at::date > '2024-01-01'", want: "created_at::pg_catalog.date > '2024-01-01'"},
		{in: `"Weird (name" = 1`, want: `"Weird (name" = 1`},
		{in: "note <> 'it''s (fine'", want: "note <> 'it''s (fine'"},
		{in: `note = E'a\'b ('`, want: `note = 'a''b ('`},
		{in: "body = $$ ) $$", want: "body = ' ) '"},
		{in: "body = $tag$ ) $tag$ and (x)", want: "body = ' ) ' AND x"},
		{in: "(a = 1 or b = 2) and c in (1, 2)", want: "(a = 1 OR b = 2) AND c IN (1, 2)"},
		{in: "note = 'a;b'", want: "note = 'a;b'"},
		{in: "x = 1 -- rest", want: "x = 1"},
		{in: "x = 1 /* rest */", want: "x = 1"},
		{in: "x = '--' and y = '/*'", want: "x = '--' AND y = '/*'"},
		{in: `path = E'C:\\dir'`, want: `path = E'C:\\dir'`},
		{in: "lower(email) LIKE '%@example.com'", want: "pg_catalog.lower(email) LIKE '%@example.com'"},
		{in: "created_at > now() - interval '1 day'", want: "created_at > (pg_catalog.now() - '1 day'::interval)"},
		{in: "extract(year from created_at) = 2024", want: "extract ('year' FROM created_at) = 2024"},
		{in: "d >= current_date - 7 and d between '2024-01-01' and '2024-12-31'"},
		{in: "coalesce(a, 0) + nullif(b, 0) > abs(c) and x is not null and y is distinct from 1"},
		{in: "case when a > 0 then 'p' else 'n' end = 'p' and s ilike 'x%' and s not like 'y%'"},
		{in: "id = any('{1,2}'::int[]) and greatest(a, b) < 10 and date_trunc('day', t) = '2024-01-01'"},
		{in: "created_at > make_interval(days => 3) + '2024-01-01'::timestamptz"},
		{in: `data->>'kind' = 'a' and data @> '{"a":1}'::jsonb`},
		{in: "price > $1", err: "parameters ($1) are not allowed"},
		{in: "", err: "empty predicate"},
		{in: "   ", err: "empty predicate"},
		{in: "true; drop table users", err: "not several statements"},
		{in: "true) union select 1 from x where (true", err: "not a valid SQL expression"},
		{in: "true union select 1", err: "no UNION"},
		{in: "true order by 1", err: "no UNION"},
		{in: "(true", err: "not a valid SQL expression"},
		{in: "x = 'open", err: "not a valid SQL expression"},
		{in: `"open = 1`, err: "not a valid SQL expression"},
		{in: "x = $a$ open", err: "not a valid SQL expression"},
		{in: "pg_sleep(10) is not null", err: "function pg_sleep is not allowed"},
		{in: "pg_terminate_backend(1)", err: "function pg_terminate_backend is not allowed"},
		{in: "lo_export(1, '/tmp/x') = 1", err: "function lo_export is not allowed"},
		{in: "set_config('a.b', 'c', false) = 'c'", err: "function set_config is not allowed"},
		{in: "pg_advisory_lock(1) is null", err: "function pg_advisory_lock is not allowed"},
		{in: "nextval('s') > 0", err: "function nextval is not allowed"},
		{in: "public.lower(x) = 'a'", err: "function public.lower is not allowed"},
		{in: `"LOWER"(x) = 'a'`, err: "function LOWER is not allowed"},
		{in: "exists (select 1 from pg_authid)", err: "subqueries are not allowed"},
		{in: "x in (select rolpassword from pg_authid)", err: "subqueries are not allowed"},
		{in: "x::regclass is not null", err: "cast to regclass is not allowed"},
		{in: "ctid > '(0,1)'", err: "system column ctid"},
		{in: "t.x = 1", err: "not qualified"},
		{in: "x = current_user", err: "date/time value functions"},
		{in: "x collate \"C\" < 'b'", err: "COLLATE is not allowed"},
		{in: "count(*) > 0", err: "function count is not allowed"},
		{in: "lower(x) over () = 'a'", err: "window functions"},
		{in: "x OPERATOR(public.=) 1", err: "operator public.= is not allowed"},
		{in: "x <-> 1", err: "operator <-> is not allowed"},
		{in: "(a, b) = (1, 2)", err: "row constructors are not allowed"},
		{in: "a[1] = 2", err: "subscripts"},
		{in: "x = 1\x00; select 1", err: "NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := checkPredicate(tt.in)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("checkPredicate(%q) = %v; want accepted", tt.in, err)
				}
				if tt.want != "" && got != tt.want {
					t.Fatalf("checkPredicate(%q) = %s; want %s", tt.in, got, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("checkPredicate(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
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
		{"created_at", `"created_at" >= pg_catalog.now() - interval '6 months'`},
		{"Created At", `"Created At" >= pg_catalog.now() - interval '6 months'`},
		{`a"b`, `"a""b" >= pg_catalog.now() - interval '6 months'`},
	}
	for _, tt := range tests {
		if got := timePredicate(tt.col, window{n: 6, unit: "month"}); got != tt.want {
			t.Errorf("timePredicate(%q) = %s; want %s", tt.col, got, tt.want)
		}
		// The generated predicate is inside the checked grammar too.
		if _, err := checkPredicate(timePredicate(tt.col, window{n: 6, unit: "month"})); err != nil {
			t.Errorf("checkPredicate(timePredicate(%q)): %v", tt.col, err)
		}
	}
}
