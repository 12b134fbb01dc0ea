package cli_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

const runAsCLI = "SEREN_TEST_RUN_AS_CLI"

// term is the CLI running on a pseudo-terminal: the pty is its
// controlling terminal, so Ctrl-C written to it is a real SIGINT.
type term struct {
	t    *testing.T
	cmd  *exec.Cmd
	f    *os.File
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
	// drained is closed once everything the process wrote has been read.
	drained chan struct{}
	code    int
}

func startTerm(t *testing.T, args ...string) *term {
	t.Helper()
	return startTermEnv(t, []string{"NO_COLOR=1"}, args...)
}

func startTermEnv(t *testing.T, env []string, args ...string) *term {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), runAsCLI+"=1", "NO_COLOR=", "TERM=xterm"), env...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 250})
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{t: t, cmd: cmd, f: f, done: make(chan struct{}), drained: make(chan struct{})}
	go func() {
		defer close(tm.drained)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			tm.code = ee.ExitCode()
		} else if err != nil {
			tm.code = -1
		}
		close(tm.done)
	}()
	t.Cleanup(func() {
		select {
		case <-tm.done:
		default:
			_ = cmd.Process.Kill()
			<-tm.done
		}
		f.Close()
	})
	return tm
}

func (tm *term) text() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// expect waits until the screen shows s (counting occurrences: the n-th).
func (tm *term) expect(s string, n int) {
	tm.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for strings.Count(tm.text(), s) < n {
		select {
		case <-tm.done:
			tm.t.Fatalf("exited %d before showing %q:\n%s", tm.code, s, tm.text())
		default:
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("no %q on the terminal:\n%s", s, tm.text())
		}
		time.Sleep(20 * time.Millisecond) // polling the screen, not ordering events
	}
}

func (tm *term) send(s string) {
	tm.t.Helper()
	if _, err := tm.f.WriteString(s); err != nil {
		tm.t.Fatal(err)
	}
}

func (tm *term) exit() int {
	tm.t.Helper()
	select {
	case <-tm.done:
	case <-time.After(2 * time.Minute):
		tm.t.Fatalf("still running:\n%s", tm.text())
	}
	// The process has ended; what it wrote last may still be in the pty:
	// read it all (the master reports EIO once drained).
	select {
	case <-tm.drained:
	case <-time.After(10 * time.Second):
	}
	return tm.code
}

// promptDB is a source database with a keyed table and one sync cannot
// carry fully (no key, no replica identity).
func promptDB(t *testing.T, src, dst *pgtest.Cluster) string {
	db, _ := src.NewDB(t, dst)
	// A second database, so the database picker has a choice to offer
	// (the postgres database is left out unless named).
	src.NewDB(t, dst)
	src.Exec(t, db, "CREATE TABLE keep (id int PRIMARY KEY); CREATE TABLE nokey (v int); INSERT INTO keep VALUES (1)")
	return db
}

// unchanged checks that nothing happened: no target database, the source
// table's replica identity as it was.
func unchanged(t *testing.T, src, dst *pgtest.Cluster, db string) {
	t.Helper()
	ctx := context.Background()
	var exists bool
	if err := dst.Conn(t, "postgres").QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	var ident string
	if err := src.Conn(t, db).QueryRow(ctx, "SELECT relreplident::text FROM pg_class WHERE relname = 'nokey'").Scan(&ident); err != nil {
		t.Fatal(err)
	}
	if exists || ident != "d" {
		t.Fatalf("something changed: target database exists %v, replica identity %q", exists, ident)
	}
}

// On a terminal, init validates first and shows warnings, offers the
// decision about a table without key, then asks; the picker takes names,
// lists the tables and asks again after bad input.
func TestInitTerminalPromptOrder(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db := promptDB(t, src, dst)
	tm := startTerm(t, "init", "--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret())
	tm.expect("Copy which?", 1)
	tm.send("nosuchdb\r")
	tm.expect("is not in the list", 1)
	tm.expect("Copy which?", 2)
	tm.send(db + "\r") // a name, not a number
	tm.expect("Tables to leave out?", 1)
	if s := tm.text(); !strings.Contains(s, db+".public.keep") || !strings.Contains(s, db+".public.nokey") {
		t.Fatalf("the tables are not listed:\n%s", s)
	}
	tm.send("\r")
	tm.expect("[f] set REPLICA IDENTITY FULL", 1)
	s := tm.text()
	if w, p := strings.Index(s, "WARNING"), strings.Index(s, "Proceed?"); w < 0 || p >= 0 {
		t.Fatalf("want the warnings before any Proceed? (warning at %d, proceed at %d):\n%s", w, p, s)
	}
	tm.send("x\r")
	tm.expect("Answer f, e or i.", 1)
	tm.send("e\r")
	tm.expect("Proceed?", 1)
	if !strings.Contains(tm.text(), "Your selection as flags (to run again or resume): --include-databases "+db+" --exclude-tables "+db+".public.nokey") {
		t.Fatalf("the selection is not echoed as flags:\n%s", tm.text())
	}
	tm.send("n\r")
	if code := tm.exit(); code != 4 {
		t.Fatalf("declined: exit %d, want 4:\n%s", code, tm.text())
	}
	unchanged(t, src, dst, db)
}

// Ctrl-C at each prompt ends init with 130 and nothing changed; end of
// input at the picker cancels (exit 4), it does not mean "all".
func TestInitTerminalCtrlCAtEachPrompt(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db := promptDB(t, src, dst)
	args := []string{"init", "--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret()}
	for _, tc := range []struct {
		name    string
		answers []string // prompt to wait for, then what to type
		key     string
		code    int
	}{
		{"database picker", []string{"Copy which?"}, "\x03", 130},
		{"table picker", []string{"Copy which?", db + "\r", "Tables to leave out?"}, "\x03", 130},
		{"key decision", []string{"Copy which?", db + "\r", "Tables to leave out?", "\r", "[f] set REPLICA"}, "\x03", 130},
		{"proceed", []string{"Copy which?", db + "\r", "Tables to leave out?", "\r", "[f] set REPLICA", "f\r", "Proceed?"}, "\x03", 130},
		{"end of input at the picker", []string{"Copy which?"}, "\x04", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm := startTerm(t, args...)
			for i := 0; i < len(tc.answers); i += 2 {
				tm.expect(tc.answers[i], 1)
				if i+1 < len(tc.answers) {
					tm.send(tc.answers[i+1])
				}
			}
			tm.send(tc.key)
			if code := tm.exit(); code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, tm.text())
			}
			unchanged(t, src, dst, db)
		})
	}
}

// On a terminal BLOCKER/WARNING are coloured, unless NO_COLOR is set.
func TestValidateColourOnTerminal(t *testing.T) {
	src, dst := pgtest.Pair(t)
	db := promptDB(t, src, dst)
	args := []string{"validate", "--source", src.URL("postgres").Secret(), "--target", dst.URL("postgres").Secret(), "--include-databases", db}
	tm := startTermEnv(t, nil, args...)
	tm.exit()
	if !strings.Contains(tm.text(), "\x1b[33mWARNING") {
		t.Fatalf("no coloured WARNING on a terminal:\n%q", tm.text())
	}
	tm = startTerm(t, args...) // NO_COLOR=1
	tm.exit()
	if s := tm.text(); !strings.Contains(s, "WARNING") || strings.Contains(s, "\x1b[") {
		t.Fatalf("NO_COLOR: want WARNING without escapes:\n%q", s)
	}
}
