package logical

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
)

// fakeSource answers freezeTimeFilters' two queries: the column's type as
// format_type prints it, then the cut-off as text.
type fakeSource struct{ typ, cutoff string }

type fakeRow struct{ v string }

func (r fakeRow) Scan(dest ...any) error { *(dest[0].(*string)) = r.v; return nil }

func (f fakeSource) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errors.New("unexpected")
}
func (f fakeSource) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, errors.New("unexpected")
}
func (f fakeSource) QueryRow(_ context.Context, sql string, _ ...any) pgx.Row {
	if strings.Contains(sql, "format_type") {
		return fakeRow{f.typ}
	}
	return fakeRow{f.cutoff}
}

// Attack: freezeTimeFilters rewrote every "(col >= now() - interval 'N u')"
// it found anywhere in the checked predicate text — also inside a quoted
// column name of a table filter — and pasted the column's type name, as the
// source's format_type printed it, after "::". Inside a quoted identifier
// the type's own quotes flip quoting, so a domain named
// ") ; COMMIT; CREATE TABLE pwned(); --" on the source turned a checked
// one-column predicate into a second statement of the (simple-protocol)
// CREATE PUBLICATION that sync and validate run.
func TestFreezeTimeFiltersCannotBeTurnedIntoSQL(t *testing.T) {
	rules, err := selection.Build(selection.Flags{TableFilters: []string{
		`public.t:"a(or >= now() - interval '1 day')b"`,
	}})
	if err != nil {
		t.Fatal(err)
	}
	_ = rules
	pred := `"a(or >= now() - interval '1 day')b"`
	src := fakeSource{typ: `") ; COMMIT; CREATE TABLE pwned(); --"`, cutoff: "2026-12-02"}
	out, err := freezeTimeFilters(context.Background(), src, TableSpec{Schema: "public", Name: "t", RowFilter: pred})
	if err == nil && out != pred {
		t.Fatalf("frozen filter rewritten to %q", out)
	}
	// A real time filter on a timestamp column still freezes.
	tf := `("created_at" >= pg_catalog.now() - interval '1 day')`
	out, err = freezeTimeFilters(context.Background(), fakeSource{typ: "timestamp with time zone", cutoff: "2026-12-02 10:00:00+00"},
		TableSpec{Schema: "public", Name: "t", RowFilter: tf})
	if err != nil || out != `("created_at" >= '2026-12-02 10:00:00+00'::timestamp with time zone)` {
		t.Fatalf("time filter frozen to %q, %v", out, err)
	}
	// A type that is not a date/time type is refused, not pasted.
	_, err = freezeTimeFilters(context.Background(), fakeSource{typ: `"x"); DROP TABLE t; --"`, cutoff: "2026-12-02"},
		TableSpec{Schema: "public", Name: "t", RowFilter: tf})
	if err == nil {
		t.Fatal("a non-date/time column type was pasted into the filter")
	}
}
