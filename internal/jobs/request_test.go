package jobs

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const sentinel = "S3ntinel-Pa55word"

var (
	srcURL = "postgres://alice:" + sentinel + "@source.example:5432/app?sslmode=require"
	dstURL = "postgresql://bob:" + sentinel + "@target.example/app"
)

// body builds a request body from the minimal valid one plus extra
// top-level members (raw JSON, comma separated).
func body(extra string) string {
	b := fmt.Sprintf(`{"schema_version":"1.0","command":"init","source_url":%q,"target_url":%q`, srcURL, dstURL)
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

func TestDecodeRequestAccepts(t *testing.T) {
	yes := true
	tests := []struct {
		name string
		body string
		want Request
	}{
		{"minimal", body(""), Request{SchemaVersion: "1.0", Command: CommandInit, SourceURL: srcURL, TargetURL: dstURL}},
		{"full", body(`"filter":{"include_databases":["app","crm"],"exclude_tables":["app.audit"],"schema_only_tables":["app.big"],
			"table_filters":["app.orders:created_at > now() - interval '1 day'"],"time_filters":["app.events:created_at:6 months"]},
			"options":{"drop_existing":true,"enable_sync":true,"estimated_size_bytes":123456789,"job_timeout":3600}`),
			Request{SchemaVersion: "1.0", Command: CommandInit, SourceURL: srcURL, TargetURL: dstURL,
				Filter: Filter{IncludeDatabases: []string{"app", "crm"}, ExcludeTables: []string{"app.audit"},
					SchemaOnlyTables: []string{"app.big"}, TableFilters: []string{"app.orders:created_at > now() - interval '1 day'"},
					TimeFilters: []string{"app.events:created_at:6 months"}},
				Options: Options{DropExisting: true, EnableSync: &yes, EstimatedSizeBytes: 123456789, JobTimeout: 3600}}},
		{"empty lists become nil", body(`"filter":{"include_databases":[]}`),
			Request{SchemaVersion: "1.0", Command: CommandInit, SourceURL: srcURL, TargetURL: dstURL}},
		{"null filter and options", body(`"filter":null,"options":null`),
			Request{SchemaVersion: "1.0", Command: CommandInit, SourceURL: srcURL, TargetURL: dstURL}},
		{"job_timeout bounds", body(`"options":{"job_timeout":604800}`),
			Request{SchemaVersion: "1.0", Command: CommandInit, SourceURL: srcURL, TargetURL: dstURL, Options: Options{JobTimeout: 604800}}},
		{"no_sync", body(`"options":{"no_sync":true,"enable_sync":false}`),
			Request{SchemaVersion: "1.0", Command: CommandInit, SourceURL: srcURL, TargetURL: dstURL, Options: Options{NoSync: true, EnableSync: new(bool)}}},
		{"trailing whitespace", body("") + "\n\t ", Request{SchemaVersion: "1.0", Command: CommandInit, SourceURL: srcURL, TargetURL: dstURL}},
	}
	for _, c := range Commands {
		tests = append(tests, struct {
			name string
			body string
			want Request
		}{"command " + string(c), strings.Replace(body(""), `"init"`, `"`+string(c)+`"`, 1),
			Request{SchemaVersion: "1.0", Command: c, SourceURL: srcURL, TargetURL: dstURL}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRequest(strings.NewReader(tt.body), 0)
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestDecodeRequestRejects(t *testing.T) {
	long := "postgres://u:p@h/" + strings.Repeat("d", 2048)
	tests := []struct {
		name      string
		body      string
		field     string
		msgSubstr string
	}{
		{"empty", "", "body", "empty"},
		{"not an object", `[1,2]`, "body", "JSON object"},
		{"null", `null`, "body", "JSON object"},
		{"string", `"x"`, "body", "JSON object"},
		{"syntax", `{"schema_version":"1.0",}`, "body", "invalid JSON"},
		{"truncated", `{"schema_version":"1.0"`, "body", "invalid JSON"},
		{"trailing object", body("") + `{}`, "body", "after the JSON object"},
		{"trailing garbage", body("") + `x`, "body", ""},
		{"unknown top-level", body(`"priority":1`), "priority", "unknown field"},
		{"wrong case", body(`"Command":"init"`), "Command", "unknown field"},
		{"unknown in filter", body(`"filter":{"include_schemas":["x"]}`), "filter.include_schemas", "unknown field"},
		{"unknown in options", body(`"options":{"parallelism":4}`), "options.parallelism", "unknown field"},
		{"duplicate", body(`"command":"sync"`), "command", "duplicate"},
		{"duplicate in options", body(`"options":{"no_sync":true,"no_sync":false}`), "options.no_sync", "duplicate"},
		{"missing schema", `{"command":"init"}`, "schema_version", "required"},
		{"bad schema", strings.Replace(body(""), `"1.0"`, `"2.0"`, 1), "schema_version", `"1.0"`},
		{"schema number", strings.Replace(body(""), `"1.0"`, `1.0`, 1), "schema_version", "must be"},
		{"missing command", strings.Replace(body(""), `"command":"init",`, ``, 1), "command", "required"},
		{"bad command", strings.Replace(body(""), `"init"`, `"cutover"`, 1), "command", "one of"},
		{"command number", strings.Replace(body(""), `"init"`, `7`, 1), "command", "string"},
		{"missing source", strings.Replace(body(""), `"source_url"`, `"_x"`, 1), "_x", "unknown"},
		{"empty source", `{"schema_version":"1.0","command":"init","source_url":"","target_url":"postgres://h/db"}`, "source_url", "required"},
		{"null target", `{"schema_version":"1.0","command":"init","source_url":"postgres://h/db","target_url":null}`, "target_url", "required"},
		{"mysql source", `{"schema_version":"1.0","command":"init","source_url":"mysql://u:` + sentinel + `@h/db","target_url":"postgres://h/db"}`, "source_url", "postgres://"},
		{"no host", `{"schema_version":"1.0","command":"init","source_url":"postgres://h/db","target_url":"postgres:///db"}`, "target_url", "host"},
		{"bad url", `{"schema_version":"1.0","command":"init","source_url":"postgres://u:` + sentinel + `@h:port/db","target_url":"postgres://h/db"}`, "source_url", ""},
		{"url too long", `{"schema_version":"1.0","command":"init","source_url":"` + long + `","target_url":"postgres://h/db"}`, "source_url", "2048"},
		{"source object", `{"schema_version":"1.0","command":"init","source_url":{},"target_url":"postgres://h/db"}`, "source_url", "string"},
		{"filter wrong type", body(`"filter":"app"`), "filter", "object"},
		{"filter list wrong type", body(`"filter":{"include_databases":"app"}`), "filter.include_databases", "array of strings"},
		{"filter list element type", body(`"filter":{"include_databases":[1]}`), "filter.include_databases", "array of strings"},
		{"filter empty string", body(`"filter":{"exclude_databases":[""]}`), "filter.exclude_databases", "empty"},
		{"bad table name", body(`"filter":{"include_tables":["a.b.c.d"]}`), "filter.include_tables", "too many dots"},
		{"include and exclude", body(`"filter":{"include_databases":["app"],"exclude_databases":["crm"]}`), "filter.exclude_databases", "filter.include_databases"},
		{"bad predicate", body(`"filter":{"table_filters":["app.t:x = 1; drop table t"]}`), "filter.table_filters[0]", "not several statements"},
		{"no predicate", body(`"filter":{"table_filters":["app.t"]}`), "filter.table_filters[0]", "missing ':'"},
		{"bad window", body(`"filter":{"time_filters":["app.t:created_at:1.5 days"]}`), "filter.time_filters[0]", "whole number"},
		{"volatile function", body(`"filter":{"table_filters":["app.t:x > 0","app.u:pg_terminate_backend(1)"]}`), "filter.table_filters[1]", "function pg_terminate_backend is not allowed"},
		{"lo_export", body(`"filter":{"table_filters":["app.t:lo_export(1, '/tmp/x') > 0"]}`), "filter.table_filters[0]", "function lo_export is not allowed"},
		{"subquery", body(`"filter":{"table_filters":["app.t:x IN (SELECT rolpassword FROM pg_authid)"]}`), "filter.table_filters[0]", "subqueries are not allowed"},
		{"literal escape", body(`"filter":{"table_filters":["app.t:x = 'a' AND pg_sleep(1) IS NULL"]}`), "filter.table_filters[0]", "function pg_sleep is not allowed"},
		{"options wrong type", body(`"options":[]`), "options", "object"},
		{"job_timeout string", body(`"options":{"job_timeout":"3600"}`), "options.job_timeout", "whole number"},
		{"job_timeout float", body(`"options":{"job_timeout":36.5}`), "options.job_timeout", "whole number"},
		{"job_timeout huge", body(`"options":{"job_timeout":1e30}`), "options.job_timeout", "whole number"},
		{"job_timeout low", body(`"options":{"job_timeout":59}`), "options.job_timeout", "between 60 and 604800"},
		{"job_timeout zero", body(`"options":{"job_timeout":0}`), "options.job_timeout", "between"},
		{"job_timeout high", body(`"options":{"job_timeout":604801}`), "options.job_timeout", "between"},
		{"size negative", body(`"options":{"estimated_size_bytes":-1}`), "options.estimated_size_bytes", "negative"},
		{"drop_existing string", body(`"options":{"drop_existing":"yes"}`), "options.drop_existing", "true or false"},
		{"sync contradiction", body(`"options":{"no_sync":true,"enable_sync":true}`), "options.no_sync", "enable_sync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRequest(strings.NewReader(tt.body), 0)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want *ValidationError, got %T %v", err, err)
			}
			if ve.Field != tt.field {
				t.Errorf("field = %q, want %q (message %q)", ve.Field, tt.field, ve.Message)
			}
			if !strings.Contains(ve.Message, tt.msgSubstr) {
				t.Errorf("message %q does not contain %q", ve.Message, tt.msgSubstr)
			}
			if !strings.HasPrefix(err.Error(), ve.Field+": ") {
				t.Errorf("Error() = %q does not name the field", err.Error())
			}
			if strings.Contains(err.Error(), sentinel) {
				t.Errorf("error leaks the password: %q", err.Error())
			}
		})
	}
}

func TestDecodeRequestSizeLimit(t *testing.T) {
	// A valid request padded with whitespace to exactly the limit passes;
	// one byte more fails.
	b := body("")
	atLimit := b + strings.Repeat(" ", MaxRequestBytes-len(b))
	if _, err := DecodeRequest(strings.NewReader(atLimit), 0); err != nil {
		t.Fatalf("request of exactly %d bytes: %v", MaxRequestBytes, err)
	}
	_, err := DecodeRequest(strings.NewReader(atLimit+" "), 0)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "body" || !strings.Contains(ve.Message, "15360") {
		t.Fatalf("over the limit: got %v", err)
	}
	if _, err := DecodeRequest(strings.NewReader(b), int64(len(b)-1)); err == nil {
		t.Fatal("custom limit not enforced")
	}
}

func TestRequestSpecAndRedaction(t *testing.T) {
	req, err := DecodeRequest(strings.NewReader(body(`"filter":{"include_databases":["app"]},"options":{"no_sync":true}`)), 0)
	if err != nil {
		t.Fatal(err)
	}
	spec := req.Spec()
	if spec.Command != CommandInit || spec.Filter.IncludeDatabases[0] != "app" || spec.Options.SyncEnabled() {
		t.Fatalf("Spec() = %+v", spec)
	}
	if c := req.Credentials(); c.SourceURL != srcURL || c.TargetURL != dstURL {
		t.Fatalf("Credentials() = %+v", c)
	}
	for _, s := range []string{req.String(), fmt.Sprint(req), req.LogValue().String()} {
		if strings.Contains(s, sentinel) {
			t.Errorf("redacted form leaks the password: %s", s)
		}
		if !strings.Contains(s, "source.example") {
			t.Errorf("redacted form lost the host: %s", s)
		}
	}
}
