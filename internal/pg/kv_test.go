package pg

import (
	"strings"
	"testing"
)

func TestParseKeyValue(t *testing.T) {
	for in, want := range map[string]string{
		"host=db.example.com port=5433 dbname=app user=u password=secret": "postgres://u:secret@db.example.com:5433/app",
		"host=db dbname=app user=u password='p w\\'x' sslmode=require":    "postgres://u:p%20w%27x@db/app?sslmode=require",
		"host=/var/run/postgresql dbname=app":                             "postgres:///app?host=%2Fvar%2Frun%2Fpostgresql",
	} {
		u, err := ParseKeyValue(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := u.Secret(); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"host=db password='unterminated", "=x", "dbname=app"} {
		_, err := ParseKeyValue(in)
		if err == nil {
			t.Errorf("%q accepted", in)
		} else if strings.Contains(err.Error(), "unterminated") {
			t.Errorf("error echoes the input: %v", err)
		}
	}
}
