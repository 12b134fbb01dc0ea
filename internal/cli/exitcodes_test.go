package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/cli"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(runAsCLI) == "1" {
		// The terminal tests start this binary as the CLI on a pty.
		os.Exit(cli.Main(os.Args[1:]))
	}
	os.Exit(pgtest.Run(m))
}

// run runs the CLI with args and stdin in, and returns the exit code,
// stdout and stderr.
func run(ctx context.Context, tty bool, stdin string, args ...string) (int, string, string) {
	io, in, out, errOut := iostreams.Test()
	io.SetTTY(tty)
	in.WriteString(stdin)
	code := cli.Run(ctx, io, args)
	return code, out.String(), errOut.String()
}

// readmeExitCodes reads the README's exit code table: code -> meaning.
func readmeExitCodes(t *testing.T) map[int]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(\\d+)` \\| (.+) \\|$").FindAllStringSubmatch(string(b), -1) {
		n, _ := strconv.Atoi(m[1])
		out[n] = m[2]
	}
	if len(out) == 0 {
		t.Fatal("README.md has no exit code table")
	}
	return out
}

// TestExitCodesMatchREADME runs one case per documented exit code (and
// each kind of usage error) and checks the code against the README table.
func TestExitCodesMatchREADME(t *testing.T) {
	doc := readmeExitCodes(t)
	for code, want := range map[int]int{0: clio.ExitOK, 1: clio.ExitFailure, 2: clio.ExitUsage, 3: clio.ExitProblems, 4: clio.ExitDeclined, 130: clio.ExitCanceled} {
		if _, ok := doc[code]; !ok || code != want {
			t.Errorf("exit code %d: README %q, constant %d", code, doc[code], want)
		}
	}
	if len(doc) != 6 {
		t.Errorf("README documents %d exit codes, the CLI has 6: %v", len(doc), doc)
	}

	src, dst := pgtest.Pair(t)
	ctx := context.Background()
	db, _ := src.NewDB(t, dst)
	dst.Exec(t, "postgres", "CREATE DATABASE "+pg.Ident(db))
	conn := []string{"--source", src.URL(db).Secret(), "--target", dst.URL(db).Secret(), "--include-databases", db}
	canceled, cancel := context.WithCancel(ctx)
	cancel()

	// A subscription whose slot does not exist on the source: status says
	// broken, and must exit 3. The name comes from status itself.
	_, out, _ := run(ctx, false, "", append([]string{"status", "-o", "json"}, conn...)...)
	var sts []struct{ Subscription string }
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	sub := pg.Ident(sts[0].Subscription)
	dst.Exec(t, db, "CREATE SUBSCRIPTION "+sub+" CONNECTION "+pg.Literal(src.URL(db).Secret())+" PUBLICATION nosuch WITH (connect = false)")
	t.Cleanup(func() {
		dst.Exec(t, db, "ALTER SUBSCRIPTION "+sub+" SET (slot_name = NONE)")
		dst.Exec(t, db, "DROP SUBSCRIPTION "+sub)
	})

	cases := []struct {
		name   string
		ctx    context.Context
		tty    bool
		stdin  string
		args   []string
		code   int
		stderr string // must appear in stderr
	}{
		{name: "ok", args: []string{"version"}, code: 0},
		{name: "failure", args: []string{"status", "--source", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2", "--target", dst.URL(db).Secret()}, code: 1},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{name: "unknown command, suggestion", args: []string{"verfy"}, code: 2, stderr: "did you mean verify?"},
		{name: "unknown subcommand", args: []string{"keys", "lst"}, code: 2, stderr: "did you mean list?"},
		{name: "extra argument", args: []string{"version", "extra"}, code: 2, stderr: "extra"},
		{name: "bad flag value in words", args: []string{"init", "-j", "abc"}, code: 2, stderr: `--jobs "abc": want a whole number`},
		{name: "unknown flag, suggestion", args: []string{"verify", "--jbos", "3"}, code: 2, stderr: "did you mean --jobs?"},
		{name: "bad duration in words", args: []string{"status", "--watch", "--interval", "soon"}, code: 2, stderr: `--interval "soon": want a duration`},
		{name: "bad output format", args: []string{"status", "-o", "yaml"}, code: 2, stderr: "use table or json"},
		{name: "differences/blockers: status broken", args: append([]string{"status"}, conn...), code: 3, stderr: db + " is broken"},
		{name: "declined at the prompt", tty: true, stdin: "n\n", args: append([]string{"sync", "--force"}, conn...), code: 4, stderr: "nothing was changed"},
		{name: "interrupted", ctx: canceled, args: []string{"jobs", "logs", "j1", "--follow", "--remote-api", "http://127.0.0.1:1", "--api-key", "sk_live_x"}, code: 130},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.ctx
			if c == nil {
				var cancel context.CancelFunc
				c, cancel = context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
			}
			code, _, errOut := run(c, tc.tty, tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) {
				t.Fatalf("%v: exit %d (want %d, README: %s)\nstderr: %s", tc.args, code, tc.code, doc[tc.code], errOut)
			}
			if strings.Contains(errOut, "strconv.") {
				t.Errorf("stderr shows a Go parse error: %s", errOut)
			}
		})
	}
}

// A table entry that matches nothing is a usage error with "did you
// mean", in every command that takes a selection, and init changes
// nothing.
func TestSelectionMatchingNothing(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, "CREATE TABLE items (id int PRIMARY KEY)")
	ctx := context.Background()
	conn := []string{"--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(), "--include-databases", db}
	for _, args := range [][]string{
		{"init", "--yes", "--no-sync", "--include-tables", db + ".itemz"},
		{"init", "--yes", "--no-sync", "--exclude-tables", db + ".public.itemz"},
		{"validate", "--include-tables", db + ".itemz"},
		{"verify", "--include-tables", db + ".itemz"},
		{"sync", "--schema-only-tables", db + ".itemz"},
	} {
		code, _, errOut := run(ctx, false, "", append(args, conn...)...)
		if code != clio.ExitUsage || !strings.Contains(errOut, "no such table") || !strings.Contains(errOut, "did you mean "+db+".") {
			t.Errorf("%v: exit %d, stderr %s", args[:2], code, errOut)
		}
	}
	var exists bool
	if err := dst.Conn(t, "postgres").QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil || exists {
		t.Fatalf("init with a selection matching nothing created the target database (%v)", err)
	}
	// An entry that matches still works.
	if code, _, errOut := run(ctx, false, "", append([]string{"validate", "--include-tables", db + ".items"}, conn...)...); code != 0 {
		t.Fatalf("validate with a matching entry: exit %d\n%s", code, errOut)
	}
}

// A libpq key/value connection string works like a URL.
func TestKeyValueConnectionString(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	u := src.URL(db)
	host, port, _ := strings.Cut(u.Host(), ":")
	kv := "host=" + host + " port=" + port + " dbname=" + db + " user=" + u.User() + " password='" + u.Password() + "'"
	code, out, errOut := run(context.Background(), false, "", "status", "-o", "json", "--source", kv, "--target", dst.URL("postgres").Secret(), "--include-databases", db)
	if code != 0 || !strings.Contains(out, `"database": "`+db+`"`) {
		t.Fatalf("status with a key/value source: exit %d\n%s\n%s", code, out, errOut)
	}
}

// -q leaves the result and errors, and silences the talk.
func TestQuiet(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db, _ := src.NewDB(t, dst)
	src.Exec(t, db, "CREATE TABLE nokey (v int)")
	ctx := context.Background()
	conn := []string{"--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(), "--include-databases", db}
	code, out, errOut := run(ctx, false, "", append([]string{"validate", "-q"}, conn...)...)
	if code != 0 || !strings.Contains(out, "WARNING") || errOut != "" {
		t.Fatalf("validate -q: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if code, _, errOut := run(ctx, false, "", append([]string{"validate", "-q", "-o", "yaml"}, conn...)...); code != 2 || !strings.Contains(errOut, "Error:") {
		t.Fatalf("an error under -q: exit %d, stderr %q", code, errOut)
	}
}
