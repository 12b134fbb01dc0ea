// Package pgtools finds and runs the PostgreSQL client tools (pg_dump,
// pg_restore) the engine uses for schema. Passwords reach them only
// through their environment (PGPASSWORD), never their arguments, and
// anything they print is redacted before it reaches a log or an error.
package pgtools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// Tools locates one set of client binaries.
type Tools struct {
	BinDir string
	Major  int
}

// Find returns client tools whose major version is at least minMajor (the
// source server's: pg_dump must not be older than the server it dumps).
// binDir overrides the search; otherwise $PG_BINDIR, /usr/lib/postgresql/*/bin
// (newest first) and PATH are tried.
func Find(ctx context.Context, binDir string, minMajor int) (Tools, error) {
	var cands []string
	if binDir != "" {
		cands = []string{binDir}
	} else {
		if d := os.Getenv("PG_BINDIR"); d != "" {
			cands = append(cands, d)
		}
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(dirs, func(i, j int) bool { return dirMajor(dirs[i]) > dirMajor(dirs[j]) })
		cands = append(cands, dirs...)
		if p, err := exec.LookPath("pg_dump"); err == nil {
			cands = append(cands, filepath.Dir(p))
		}
	}
	var found []string
	for _, d := range cands {
		major, err := version(ctx, filepath.Join(d, "pg_dump"))
		if err != nil {
			continue
		}
		found = append(found, fmt.Sprintf("%s (%d)", d, major))
		if major >= minMajor {
			if _, err := os.Stat(filepath.Join(d, "pg_restore")); err != nil {
				continue
			}
			return Tools{BinDir: d, Major: major}, nil
		}
	}
	if len(found) == 0 {
		return Tools{}, hint.Wrap(errors.New("pg_dump and pg_restore not found"),
			fmt.Sprintf("install the PostgreSQL %d (or newer) client tools, e.g. `apt-get install postgresql-client-%d`, or pass --pg-bin-dir", minMajor, minMajor))
	}
	return Tools{}, hint.Wrap(fmt.Errorf("pg_dump is older than the source server (PostgreSQL %d); found %s", minMajor, strings.Join(found, ", ")),
		fmt.Sprintf("install the PostgreSQL %d (or newer) client tools, e.g. `apt-get install postgresql-client-%d`, or pass --pg-bin-dir", minMajor, minMajor))
}

func dirMajor(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

var versionRe = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

func version(ctx context.Context, bin string) (int, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return 0, err
	}
	m := versionRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("unrecognised version output %q", out)
	}
	return strconv.Atoi(string(m[1]))
}

// Command prepares tool (e.g. "pg_dump") with args, connected to u through
// its environment (PGHOST, PGUSER, PGPASSWORD, …): no URL and no secret is
// on its command line, only --dbname with a keyword/value string naming
// the database. A URL from pg.ParseUntrusted is resolved through its
// policy now and the tool pinned to the checked address; if that is
// refused, the command fails to start with the reason.
func (t Tools) Command(ctx context.Context, tool string, u pg.URL, args ...string) *exec.Cmd {
	env, conninfo, hidden, err := u.ChildConnHidden(ctx)
	full := append([]string{"--dbname=" + conninfo}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(t.BinDir, tool), full...)
	cmd.Env = append(cleanEnv(), env...)
	if err != nil {
		cmd.Err = fmt.Errorf("%s: %w", tool, err)
		return cmd
	}
	if len(hidden) > 0 {
		// sslpassword has no environment variable: a private service
		// file carries it, removed when Run or Pipe has finished.
		path, ferr := writeServiceFile(hidden)
		if ferr != nil {
			cmd.Err = fmt.Errorf("%s: %w", tool, ferr)
			return cmd
		}
		serviceFiles.Store(cmd, path)
		cmd.Env = append(cmd.Env, "PGSERVICEFILE="+path, "PGSERVICE="+childService)
	}
	return cmd
}

const childService = "postgres_seren_replicator_child"

// serviceFiles maps a prepared command to its private service file.
var serviceFiles sync.Map

func writeServiceFile(lines []string) (string, error) {
	f, err := os.CreateTemp("", "seren-pgservice-*.conf")
	if err != nil {
		return "", fmt.Errorf("create a private service file: %w", err)
	}
	body := "[" + childService + "]\n"
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			continue
		}
		body += l + "\n"
	}
	_, werr := f.WriteString(body)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write a private service file: %w", errors.Join(werr, cerr))
	}
	return f.Name(), nil
}

// cleanup removes what Command left for cmd.
func cleanup(cmds ...*exec.Cmd) {
	for _, c := range cmds {
		if p, ok := serviceFiles.LoadAndDelete(c); ok {
			os.Remove(p.(string))
		}
	}
}

// Offline prepares a tool run that connects to no server (e.g. pg_restore --list).
func (t Tools) Offline(ctx context.Context, tool string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(t.BinDir, tool), args...)
	cmd.Env = cleanEnv()
	return cmd
}

// cleanEnv is the process environment without libpq variables that could
// redirect a child tool to another server.
func cleanEnv() []string {
	var out []string
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "PG") && !strings.HasPrefix(e, "PG_BINDIR=") {
			continue
		}
		out = append(out, e)
	}
	return out
}

// Run runs cmd, returning a redacted error that includes the tail of stderr.
func Run(cmd *exec.Cmd, urls ...pg.URL) error {
	defer cleanup(cmd)
	var stderr bytes.Buffer
	cmd.Stderr = &limitWriter{w: &stderr, n: 64 << 10}
	if err := cmd.Run(); err != nil {
		return ToolError(cmd, err, stderr.String(), urls...)
	}
	return nil
}

// ToolError describes a failed child tool without secrets.
func ToolError(cmd *exec.Cmd, err error, stderr string, urls ...pg.URL) error {
	name := filepath.Base(cmd.Path)
	msg := strings.TrimSpace(pg.Redact(stderr, urls...))
	if len(msg) > 4000 {
		msg = "…" + msg[len(msg)-4000:]
	}
	if msg == "" {
		return fmt.Errorf("%s: %w", name, err)
	}
	return fmt.Errorf("%s failed (%v):\n%s", name, err, msg)
}

// Pipe runs producer | consumer through an OS pipe, streaming bytes
// without temporary files. If the consumer dies, the producer gets EPIPE
// instead of blocking forever.
func Pipe(producer, consumer *exec.Cmd, urls ...pg.URL) error {
	defer cleanup(producer, consumer)
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create pipe: %w", err)
	}
	producer.Stdout = w
	consumer.Stdin = r
	var perr, cerr bytes.Buffer
	producer.Stderr = &limitWriter{w: &perr, n: 64 << 10}
	consumer.Stderr = &limitWriter{w: &cerr, n: 64 << 10}
	if err := consumer.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("start %s: %w", filepath.Base(consumer.Path), err)
	}
	r.Close()
	if err := producer.Start(); err != nil {
		w.Close()
		_ = consumer.Wait()
		return fmt.Errorf("start %s: %w", filepath.Base(producer.Path), err)
	}
	w.Close()
	pErr := producer.Wait()
	cErr := consumer.Wait()
	// Report the side that failed first. A producer that died of (or
	// complained about) a broken pipe was stopped by the consumer's
	// failure; any other producer failure came first, and the consumer's
	// own complaint ("input file is too short") only follows from it.
	if pErr != nil && !brokenPipe(pErr, perr.String()) {
		err := ToolError(producer, pErr, perr.String(), urls...)
		if cErr != nil {
			return fmt.Errorf("%w\n(%s then stopped: %v)", err, filepath.Base(consumer.Path), cErr)
		}
		return err
	}
	if cErr != nil {
		return ToolError(consumer, cErr, cerr.String(), urls...)
	}
	if pErr != nil {
		return ToolError(producer, pErr, perr.String(), urls...)
	}
	return nil
}

// brokenPipe reports whether a producer failed because its reader went
// away: killed by SIGPIPE, or reporting EPIPE on its standard output.
func brokenPipe(err error, stderr string) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGPIPE {
			return true
		}
	}
	return strings.Contains(stderr, "Broken pipe") || strings.Contains(stderr, "broken pipe")
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if len(q) > l.n {
		q = q[:l.n]
	}
	l.n -= len(q)
	_, _ = l.w.Write(q)
	return len(p), nil
}
