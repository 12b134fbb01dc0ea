package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/cli"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
)

func runRoot(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	io, _, out, errOut := iostreams.Test()
	code := cli.Run(context.Background(), io, args)
	return code, out.String(), errOut.String()
}

// TestV3VersionAndNoInteractive: --version/-V print the version, and
// --no-interactive is accepted by every command (here with --help, which
// fails on an unknown flag first).
func TestV3VersionAndNoInteractive(t *testing.T) {
	_, want, _ := runRoot(t, "version")
	for _, flag := range []string{"--version", "-V"} {
		code, out, errOut := runRoot(t, flag)
		if code != 0 || out != want || !strings.HasPrefix(out, "postgres-seren-replicator ") {
			t.Errorf("%s: exit %d, out %q (want %q), err %q", flag, code, out, want, errOut)
		}
	}
	for _, cmd := range []string{"init", "sync", "status", "verify", "validate", "cutover", "serve", "worker", "keys", "jobs", "version"} {
		code, _, errOut := runRoot(t, cmd, "--no-interactive", "--help")
		if code != 0 {
			t.Errorf("%s --no-interactive: exit %d: %s", cmd, code, errOut)
		}
	}
	if code, _, _ := runRoot(t, "sync", "--not-a-flag", "--help"); code == 0 {
		t.Fatal("an unknown flag with --help is accepted: the loop above proves nothing")
	}
	if code, _, errOut := runRoot(t, "version", "--no-interactive"); code != 0 {
		t.Errorf("version --no-interactive: exit %d: %s", code, errOut)
	}
}
