package jobs

import (
	"strings"
	"testing"
)

func TestPublicMessage(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"[TRACE:6b04-4efd] worker failed: dial tcp 10.0.0.1:5432: connect: connection refused",
			"[TRACE:6b04-4efd] could not connect to the database server: no PostgreSQL server answered at that host and port. " +
				"Try: check the host and port in the URLs and that the server accepts connections from the job service"},
		{`source postgres://app:xxxxx@db.example.com/shop: password authentication failed for user "app" (SQLSTATE 28P01)`,
			`source postgres://app:xxxxx@db.example.com/shop: password authentication failed for user "app" (SQLSTATE 28P01)`},
		{"copied 10/20 tables in 00:01:02 (1.5 GB)", "copied 10/20 tables in 00:01:02 (1.5 GB)"},
		{"open /root/.pgpass: permission denied", "open [path]: permission denied"},
		{`file "/tmp/x/y.sql" missing`, `file "[path]" missing`},
		{"peer 10.1.2.3:5432 and ::1 and [2001:db8::5]:443 said hi", "peer [address] and [address] and [address] said hi"},
		{"target postgres://u:xxxxx@h/db: timed out: context deadline exceeded",
			"could not connect to the target database server: no PostgreSQL server answered at that host and port. " +
				"Try: check the host and port in the target URL and that the server accepts connections from the job service"},
	} {
		if got := PublicMessage(tc.in); got != tc.want {
			t.Errorf("PublicMessage(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func FuzzPublicMessage(f *testing.F) {
	f.Add("dial tcp 10.0.0.1:5432: connect: connection refused")
	f.Add("open /var/lib/x: denied [fe80::1%eth0]:5432")
	f.Fuzz(func(t *testing.T, s string) {
		out := PublicMessage(s)
		if strings.Contains(strings.ToLower(out), "connection refused") {
			t.Fatalf("kept a connection failure: %q", out)
		}
	})
}
