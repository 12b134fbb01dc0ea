package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeRequest checks the submit validator on arbitrary bodies (seed
// corpus in testdata/fuzz/FuzzDecodeRequest):
//   - it never panics and every error is a *ValidationError;
//   - an accepted request re-encodes and decodes to the same value;
//   - an error never contains a password from the input's URLs.
//
// Run briefly in CI (a short minimize time keeps the budget on fuzzing:
// minimizing a 15 KB input can otherwise take the whole run):
//
//	go test ./internal/jobs -run '^$' -fuzz FuzzDecodeRequest -fuzztime 30s -fuzzminimizetime 5s
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(body("")))
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := DecodeRequest(bytes.NewReader(in), 0)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error is %T, not *ValidationError: %v", err, err)
			}
			if ve.Field == "" || ve.Message == "" {
				t.Fatalf("error without field or message: %#v", ve)
			}
			checkNoPasswordLeak(t, in, err)
			return
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(req); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := DecodeRequest(&buf, 1<<20)
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v\n%s", err, buf.String())
		}
		if !reflect.DeepEqual(req, again) {
			t.Fatalf("round trip changed the request:\n%#v\n%#v", req, again)
		}
	})
}

// checkNoPasswordLeak fails if err contains a password of the body's URLs
// because of that password: the same body with the password replaced by
// other bytes of the same length must not produce a message containing
// it. (A password that is also a word of the message templates, or that
// appears in the body outside the URLs, is not checked.)
func checkNoPasswordLeak(t *testing.T, in []byte, err error) {
	t.Helper()
	var raw map[string]json.RawMessage
	if json.Unmarshal(in, &raw) != nil {
		return
	}
	for _, p := range passwords(raw) {
		if len(p) < 6 || !strings.Contains(err.Error(), p) {
			continue
		}
		pb := []byte(p)
		if bytes.Count(in, pb) != bytes.Count(raw["source_url"], pb)+bytes.Count(raw["target_url"], pb) {
			continue // also elsewhere in the body, e.g. as a field name
		}
		repl := bytes.Repeat([]byte{'Q'}, len(pb))
		if strings.ContainsRune(p, 'Q') {
			repl = bytes.Repeat([]byte{'Z'}, len(pb))
		}
		_, err2 := DecodeRequest(bytes.NewReader(bytes.ReplaceAll(in, pb, repl)), 0)
		if err2 != nil && strings.Contains(err2.Error(), p) {
			continue // the text is part of the message itself
		}
		t.Fatalf("error %q contains the password %q", err.Error(), p)
	}
}

func passwords(raw map[string]json.RawMessage) []string {
	var out []string
	for _, k := range []string{"source_url", "target_url"} {
		var s string
		if json.Unmarshal(raw[k], &s) != nil {
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		if u.User != nil {
			if p, ok := u.User.Password(); ok {
				out = append(out, p)
			}
		}
		if p := u.Query().Get("password"); p != "" {
			out = append(out, p)
		}
	}
	return out
}
