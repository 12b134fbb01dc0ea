package logical

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/selection"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// validate fails on the conditions init refuses at start.
func TestValidateBlocksWhatInitRefuses(t *testing.T) {
	src, dst := pgtest.Pair(t)
	ctx := context.Background()
	cases := []struct {
		name    string
		setup   func(t *testing.T, db string) pg.URL // returns the source URL to validate with
		drop    bool
		blocker string // "" = no blocker with this object prefix
		object  string
	}{
		{"non-empty target database", func(t *testing.T, db string) pg.URL {
			dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
			dst.Exec(t, db, "CREATE TABLE theirs (id int)")
			return src.URL("postgres")
		}, false, "already holds 1 tables", "database "},
		{"non-empty target database with --drop-existing", func(t *testing.T, db string) pg.URL {
			dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
			dst.Exec(t, db, "CREATE TABLE theirs (id int)")
			return src.URL("postgres")
		}, true, "", "database "},
		{"sequence the source user cannot read", func(t *testing.T, db string) pg.URL {
			role := db + "_ro"
			src.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'pw-ro'", role))
			t.Cleanup(func() { src.Exec(t, db, "DROP OWNED BY "+role); src.Exec(t, "postgres", "DROP ROLE "+role) })
			src.Exec(t, db, fmt.Sprintf("CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT ON t TO %s; CREATE SEQUENCE secret_seq; REVOKE ALL ON SEQUENCE secret_seq FROM PUBLIC", role))
			return pg.MustParseURL(fmt.Sprintf("postgres://%s:pw-ro@%s/postgres?sslmode=disable", role, src.URL("postgres").Host()))
		}, false, "cannot read sequence", "sequence "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, _ := src.NewDB(t, dst)
			srcURL := c.setup(t, db)
			rules, err := selection.Build(selection.Flags{IncludeDatabases: []string{db}})
			if err != nil {
				t.Fatal(err)
			}
			ps, err := Validate(ctx, ValidateOptions{Source: srcURL, Target: dst.URL("postgres"), Rules: rules, NoSync: true, DropExisting: c.drop})
			if err != nil {
				t.Fatal(err)
			}
			var found *Problem
			for i, p := range ps {
				if p.Severity == Blocker && strings.HasPrefix(p.Object, c.object) {
					found = &ps[i]
				}
			}
			switch {
			case c.blocker == "" && found != nil:
				t.Fatalf("unexpected blocker: %+v", *found)
			case c.blocker != "" && (found == nil || !strings.Contains(found.Message, c.blocker) || found.Fix == ""):
				t.Fatalf("no blocker %q on %q*; got %+v", c.blocker, c.object, ps)
			}
		})
	}
}
