package backends

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// The API, the service loops and the worker see the backends only through
// their interfaces: only this package (and the commands that call it)
// imports a concrete backend. This test keeps that true.
func TestOnlyBackendsImportsImplementations(t *testing.T) {
	const mod = "github.com/serenorg/postgres-seren-replicator/internal/"
	implementations := []string{
		"jobstore/sqlitestore", "jobstore/dynamostore", "queue/sqlitequeue", "queue/sqsqueue",
		"secrets/localkey", "secrets/kmskeys", "apikeys/sqlitekeys", "apikeys/ssmkeys",
		"joblog/sqlitelog", "joblog/cwlog", "telemetry/promtelemetry", "telemetry/cwtelemetry",
		"launcher/locallauncher", "launcher/ec2launcher", "sqlitedb",
	}
	for _, pkg := range []string{"api", "service", "worker"} {
		out, err := exec.Command("go", "list", "-deps", "-json=ImportPath", mod+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(out)))
		for dec.More() {
			var p struct{ ImportPath string }
			if err := dec.Decode(&p); err != nil {
				t.Fatal(err)
			}
			for _, impl := range implementations {
				if p.ImportPath == mod+impl {
					t.Errorf("internal/%s imports the implementation internal/%s; use its interface and let internal/backends choose", pkg, impl)
				}
			}
		}
	}
}
