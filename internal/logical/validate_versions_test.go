package logical

import (
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/selection"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// TestValidateReplicationOriginsPerMajor: each subscription needs a
// replication origin on the target, limited by max_replication_slots up to
// PostgreSQL 17 and by max_active_replication_origins from 18 on. A target
// with no origin to spare is a blocker naming the setting that limits it.
func TestValidateReplicationOriginsPerMajor(t *testing.T) {
	for _, tc := range []struct {
		major    int
		settings []string
		setting  string
	}{
		{17, []string{"max_replication_slots = 0"}, "max_replication_slots"},
		{18, []string{"max_active_replication_origins = 0"}, "max_active_replication_origins"},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			ctx := testCtx(t)
			src, _ := pgtest.Pair(t)
			dst := pgtest.New(t, pgtest.Options{Major: tc.major, Settings: append(tc.settings, "shared_buffers = 32MB")})
			db, _ := src.NewDB(t)
			src.Exec(t, db, "CREATE TABLE t (id int PRIMARY KEY)")
			rules, err := selection.Build(selection.Flags{IncludeDatabases: []string{db}})
			if err != nil {
				t.Fatal(err)
			}
			ps, err := Validate(ctx, ValidateOptions{Source: src.URL("postgres"), Target: dst.URL("postgres"), Rules: rules})
			if err != nil {
				t.Fatal(err)
			}
			got := find(ps, tc.setting)
			if len(got) != 1 || got[0].Severity != Blocker || got[0].Server != "target" {
				t.Fatalf("PostgreSQL %d target with %v: want one target blocker on %s, got %+v", tc.major, tc.settings, tc.setting, ps)
			}
		})
	}
}
