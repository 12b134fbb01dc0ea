package jobs

import (
	"os"
	"strings"
	"testing"
)

// v3Body returns a request body the original (v3) client sends, from
// testdata/v3, with URLs and database substituted.
func v3Body(t *testing.T, name, src, dst, db string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/v3/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("SOURCE_URL", src, "TARGET_URL", dst, "DATABASE", db).Replace(string(b))
}

func TestDecodeRequestV3ClientBody(t *testing.T) {
	fixture := v3Body(t, "init-request.json", srcURL, dstURL, "shop")
	tests := []struct {
		name, body string
	}{
		{"as sent with --include-databases and --exclude-tables", fixture},
		{"null filter lists", strings.Replace(fixture, `"exclude_tables":["shop.skipped"]`, `"exclude_tables":null`, 1)},
		{"null filter (no filter flag)", strings.Replace(fixture,
			`{"include_databases":["shop"],"exclude_tables":["shop.skipped"]}`, `null`, 1)},
		{"yes false", strings.Replace(fixture, `"yes":true`, `"yes":false`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeRequest(strings.NewReader(tt.body), 0)
			if err != nil {
				t.Fatalf("the original client's body is refused: %v", err)
			}
			spec := req.Spec()
			if spec.Options.SyncEnabled() || spec.Options.JobTimeout != 28800 || spec.Options.Yes != nil {
				t.Fatalf("options = %+v", spec.Options)
			}
		})
	}
	if _, err := DecodeRequest(strings.NewReader(strings.Replace(fixture, `"yes":true`, `"yes":"y"`, 1)), 0); err == nil ||
		!strings.Contains(err.Error(), "options.yes: must be true or false") {
		t.Fatalf(`"yes":"y" gave %v`, err)
	}
}
