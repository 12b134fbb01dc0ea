package replicator_test

import (
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// TestSecretParametersStayOutOfTheOutput: an sslpassword in the URLs (the
// local CLI accepts it) appears nowhere in init's output, and a password
// equal to the scheme and user name ("postgres") redacts only itself. The
// copy still works: pg_dump/pg_restore get sslpassword from a private
// service file. Seen failing first: the URL's sslpassword was printed.
func TestSecretParametersStayOutOfTheOutput(t *testing.T) {
	const sentinel = "SslPw-Sentinel-31c7"
	src := pgtest.New(t, pgtest.Options{Password: "postgres"})
	dst := pgtest.New(t, pgtest.Options{Password: "postgres"})
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)")
	code, out, errOut := runCLI(t, "init", "--local", "--yes", "--no-sync",
		"--source", adminURL(src)+"&sslpassword="+sentinel, "--target", adminURL(dst)+"&sslpassword="+sentinel,
		"--include-databases", db)
	if code != 0 {
		t.Fatalf("init exited %d\n%s", code, errOut)
	}
	all := out + errOut
	if strings.Contains(all, sentinel) {
		t.Errorf("the sslpassword appears in the output:\n%s", all)
	}
	if strings.Contains(all, "xxxxx://") || strings.Contains(all, "xxxxx-seren") || !strings.Contains(all, "postgres://postgres:xxxxx@") {
		t.Errorf("redaction garbles the output:\n%s", all)
	}
	if n := countRows(t, dst, db, "t"); n != 10 {
		t.Errorf("target has %d rows, want 10", n)
	}
}
