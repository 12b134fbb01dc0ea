package replicator_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/pgtools"
	"github.com/serenorg/postgres-seren-replicator/internal/schema"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// Tables whose foreign keys reference each other: the post-data stage
// adds both constraints in parallel, which can deadlock (40P01). Run the
// scheduler many times over such pairs; it must never fail.
func TestPostDataCircularForeignKeysNeverDeadlock(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	var fks []string
	for _, p := range []string{"a", "b", "c"} {
		src.Exec(t, db, fmt.Sprintf(`
CREATE TABLE %[1]s_teams (id int PRIMARY KEY, captain int);
CREATE TABLE %[1]s_players (id int PRIMARY KEY, team_id int);
INSERT INTO %[1]s_teams SELECT g, g FROM generate_series(1, 2000) g;
INSERT INTO %[1]s_players SELECT g, g FROM generate_series(1, 2000) g;
ALTER TABLE %[1]s_players ADD CONSTRAINT %[1]s_players_team_fk FOREIGN KEY (team_id) REFERENCES %[1]s_teams (id);
ALTER TABLE %[1]s_teams ADD CONSTRAINT %[1]s_teams_captain_fk FOREIGN KEY (captain) REFERENCES %[1]s_players (id) DEFERRABLE;`, p))
		fks = append(fks, fmt.Sprintf("ALTER TABLE %[1]s_players DROP CONSTRAINT %[1]s_players_team_fk; ALTER TABLE %[1]s_teams DROP CONSTRAINT %[1]s_teams_captain_fk;", p))
	}
	code, out, errOut := runCLI(t, "init", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db, "--no-sync", "--yes", "--jobs", "4")
	if code != 0 {
		t.Fatalf("init exit %d\n%s\n%s", code, out, errOut)
	}
	ctx := context.Background()
	tools, err := pgtools.Find(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	d := &schema.Dumper{Tools: tools, Source: src.URL(db), Target: dst.URL(db), WorkDir: t.TempDir()}
	post, err := d.PreparePostData(ctx, src.Conn(t, db), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()
	conn := dst.Conn(t, db)
	for i := 0; i < 30; i++ {
		for _, f := range fks {
			if _, err := conn.Exec(ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		if err := post.Rest(ctx, conn, 6); err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 6 {
			t.Fatalf("iteration %d: %d foreign keys on the target, want 6", i, n)
		}
	}
}
