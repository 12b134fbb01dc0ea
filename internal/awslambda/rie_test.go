package awslambda_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/testutil/awstest"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

func TestMain(m *testing.M) {
	// The test clusters listen on loopback, which job connections may only
	// reach when the operator allows it (pg.EnvAllowNetworks); the API and
	// worker processes started here inherit this.
	os.Setenv("SEREN_ALLOW_NETWORKS", "127.0.0.0/8")
	code := pgtest.Run(m)
	builds.cleanup()
	os.Exit(code)
}

// builds caches the binaries built for this test run (one build per
// package path, shared by the tests).
var builds = &buildCache{out: map[string]*build{}}

type buildCache struct {
	mu  sync.Mutex
	dir string
	out map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

func (c *buildCache) cleanup() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// binary builds the main package pkg (relative to the module root, e.g.
// "./cmd/lambda-api") once; lambda builds use the provided.al2023 recipe
// of deploy/aws (tag lambda.norpc, no cgo), named bootstrap.
func binary(t *testing.T, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.dir == "" {
		d, err := os.MkdirTemp("", "awslambda-bin-")
		if err != nil {
			builds.mu.Unlock()
			t.Fatal(err)
		}
		builds.dir = d
	}
	b := builds.out[pkg]
	if b == nil {
		b = &build{}
		builds.out[pkg] = b
	}
	dir := builds.dir
	builds.mu.Unlock()
	b.once.Do(func() {
		root, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			b.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		name := filepath.Base(pkg)
		args := []string{"build", "-o"}
		if strings.HasPrefix(name, "lambda-") {
			out := filepath.Join(dir, name, "bootstrap")
			args = append(args, out, "-tags", "lambda.norpc", pkg)
			b.path = out
		} else {
			b.path = filepath.Join(dir, name)
			args = append(args, b.path, pkg)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(root)))
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// function is one Lambda bootstrap running under aws-lambda-rie. The
// emulator serves one invocation at a time (a concurrent one crashes it),
// so invoke serialises.
type function struct {
	name string
	url  string
	mu   sync.Mutex
	out  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startFunction runs bootstrap (built from pkg) under the RIE with the
// test's environment plus env, as Lambda would with the function's
// configured variables.
func startFunction(t *testing.T, pkg string, env map[string]string) *function {
	t.Helper()
	rie := awstest.RIE(t)
	bootstrap := binary(t, pkg)
	port, rport := freePort(t), freePort(t)
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", fmt.Sprintf("127.0.0.1:%d", port),
		"--runtime-api-address", fmt.Sprintf("127.0.0.1:%d", rport), bootstrap)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	f := &function{name: filepath.Base(pkg), out: &lockedBuffer{},
		url: fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", port)}
	cmd.Stdout, cmd.Stderr = f.out, f.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", f.name, f.out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("aws-lambda-rie exited:\n%s", f.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("aws-lambda-rie not ready:\n%s", f.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return f
}

// invoke sends event to the function and decodes its result into out. A
// handler error (which the RIE answers with 200 and an errorMessage) fails
// the test unless wantErr; it is returned.
func (f *function) invoke(t *testing.T, event, out any) (raw []byte, handlerErr string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	body, err := json.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("invoke %s: %v\n%s", f.name, err, f.out.String())
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke %s: %s: %s\n%s", f.name, resp.Status, raw, f.out.String())
	}
	var fe struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}
	if json.Unmarshal(raw, &fe) == nil && fe.ErrorType != "" {
		return raw, fe.ErrorType + ": " + fe.ErrorMessage
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("invoke %s: result %s: %v", f.name, raw, err)
		}
	}
	return raw, ""
}
