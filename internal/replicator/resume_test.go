package replicator_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/dbcompare"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// resumeFixture has what post-data builds per table (primary keys, a
// unique constraint, an index) and at the end (circular foreign keys, a
// trigger, a policy), plus a sequence and a large object.
const resumeFixture = `
CREATE TABLE teams (id int PRIMARY KEY, name text NOT NULL, captain int);
CREATE TABLE players (id int PRIMARY KEY, name text NOT NULL, team_id int, CONSTRAINT players_name_key UNIQUE (name));
CREATE INDEX players_team ON players (team_id);
INSERT INTO teams SELECT g, 'team' || g, g FROM generate_series(1, 50) g;
INSERT INTO players SELECT g, 'player' || g, (g % 50) + 1 FROM generate_series(1, 2000) g;
ALTER TABLE players ADD CONSTRAINT players_team_fk FOREIGN KEY (team_id) REFERENCES teams (id);
ALTER TABLE teams ADD CONSTRAINT teams_captain_fk FOREIGN KEY (captain) REFERENCES players (id) DEFERRABLE;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER players_touch BEFORE UPDATE ON players FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE teams ENABLE ROW LEVEL SECURITY;
CREATE POLICY teams_all ON teams USING (true);
CREATE SEQUENCE invoice_no; SELECT setval('invoice_no', 77);
SELECT lo_from_bytea(0, 'large object');`

// SIGKILL at every step boundary of a table (rows in, each index built,
// each constraint added, table finished) and of init's later stages; the
// same command again completes, and the target equals the source.
func TestInitResumesFromEveryStepBoundary(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, resumeFixture)
	args := []string{"init", "--source", adminURL(src), "--target", adminURL(dst), "--include-databases", db, "--no-sync", "--yes", "--jobs", "1"}
	for n := 1; ; n++ {
		if n > 60 {
			t.Fatal("still killed after 60 boundaries: the hook never lets the run finish")
		}
		dst.DropDB(db)
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "SEREN_TEST_CLI=1", fmt.Sprintf("SEREN_TEST_KILL_AFTER=%d", n))
		out, err := cmd.CombinedOutput()
		if err == nil {
			if n < 10 {
				t.Fatalf("the run passed only %d step boundaries; the hook is not where the steps are", n-1)
			}
			t.Logf("resumed from each of %d step boundaries", n-1)
			return
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
			t.Fatalf("boundary %d: the run failed instead of being killed: %v\n%s", n, err, out)
		}
		code, stdout, errOut := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("boundary %d: re-run exit %d\n%s\n%s", n, code, stdout, errOut)
		}
		t.Logf("boundary %d: killed, re-run completed", n)
		s, d := src.Conn(t, db), dst.Conn(t, db)
		dbcompare.Equal(t, s, d)
		s.Close(context.Background())
		d.Close(context.Background())
	}
}
