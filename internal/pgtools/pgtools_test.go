package pgtools

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/pg"
)

// TestCommandKeepsSecretsOffTheCommandLine: no URL, password or
// sslpassword in argv; the sslpassword reaches libpq through a private
// service file that is gone once the tool has run.
func TestCommandKeepsSecretsOffTheCommandLine(t *testing.T) {
	const pw, sslpw = "Pw-Sentinel-9", "SslPw-Sentinel-8"
	u := pg.MustParseURL("postgres://alice:" + pw + "@db.example.com/shop?sslmode=require&sslpassword=" + sslpw)
	cmd := Tools{BinDir: "/bin"}.Command(context.Background(), "true", u, "--schema-only")
	argv := strings.Join(cmd.Args, " ")
	for _, leak := range []string{pw, sslpw, "postgres://", "db.example.com"} {
		if strings.Contains(argv, leak) {
			t.Errorf("argv %q contains %q", argv, leak)
		}
	}
	var file string
	for _, e := range cmd.Env {
		if v, ok := strings.CutPrefix(e, "PGSERVICEFILE="); ok {
			file = v
		}
	}
	if file == "" {
		t.Fatalf("no PGSERVICEFILE in the environment")
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("service file mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(file)
	if !strings.Contains(string(b), "sslpassword="+sslpw) {
		t.Errorf("service file lacks the sslpassword:\n%s", b)
	}
	if err := Run(cmd, u); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("service file still there after Run: %v", err)
	}
}
