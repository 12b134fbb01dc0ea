// Package joblogtest is the conformance suite every joblog.Log passes:
//
//	func TestConformance(t *testing.T) {
//		joblogtest.Run(t, func(t *testing.T) joblog.Log { return newTestLog(t) })
//	}
//
// newLog must return a log that holds no lines of the job ids the suite
// uses (it uses fresh random ids per test, so a shared log group is fine).
// The suite checks one writer per job, as the worker is.
package joblogtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
)

// Run runs the conformance suite.
func Run(t *testing.T, newLog func(t *testing.T) joblog.Log) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, l joblog.Log)
	}{
		{"AppendAndRead", testAppendRead},
		{"SeqIncreasesAcrossAppends", testAcrossAppends},
		{"FollowInPages", testFollow},
		{"GivenSeqKept", testGivenSeq},
		{"JobsIsolated", testIsolated},
		{"TextFidelity", testText},
		{"ZeroTimeIsNow", testZeroTime},
		{"URL", testURL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newLog(t)) })
	}
}

// NewJobID returns a fresh job id.
func NewJobID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "job-" + hex.EncodeToString(b)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// base is a millisecond-precision instant.
func base() time.Time { return time.Now().UTC().Truncate(time.Millisecond).Add(-time.Minute) }

func lines(start time.Time, texts ...string) []joblog.Line {
	out := make([]joblog.Line, len(texts))
	for i, s := range texts {
		out[i] = joblog.Line{Time: start.Add(time.Duration(i) * time.Millisecond), Text: s}
	}
	return out
}

func appendLines(t *testing.T, l joblog.Log, job string, ls []joblog.Line) {
	t.Helper()
	if err := l.Append(ctxFor(t), job, ls); err != nil {
		t.Fatalf("Append to %s: %v", job, err)
	}
}

func readAll(t *testing.T, l joblog.Log, job string) []joblog.Line {
	t.Helper()
	got, err := l.Read(ctxFor(t), job, 0, 0)
	if err != nil {
		t.Fatalf("Read %s: %v", job, err)
	}
	return got
}

func texts(ls []joblog.Line) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Text
	}
	return out
}

func checkIncreasing(t *testing.T, ls []joblog.Line) {
	t.Helper()
	for i, l := range ls {
		if l.Seq <= 0 || (i > 0 && l.Seq <= ls[i-1].Seq) {
			t.Fatalf("seqs not positive and strictly increasing: line %d has seq %d (lines %+v)", i, l.Seq, ls)
		}
	}
}

func testAppendRead(t *testing.T, l joblog.Log) {
	job := NewJobID()
	in := lines(base(), "[TRACE:t1] starting", "[TRACE:t1] copying app.public.orders", "[TRACE:t1] done")
	appendLines(t, l, job, in)
	got := readAll(t, l, job)
	if len(got) != len(in) {
		t.Fatalf("read %d lines, want %d: %v", len(got), len(in), texts(got))
	}
	checkIncreasing(t, got)
	for i := range in {
		if got[i].Text != in[i].Text || !got[i].Time.Equal(in[i].Time) {
			t.Errorf("line %d = %q at %v, want %q at %v", i, got[i].Text, got[i].Time, in[i].Text, in[i].Time)
		}
	}
	if empty := readAll(t, l, NewJobID()); len(empty) != 0 {
		t.Errorf("a job without lines read %d lines", len(empty))
	}
	if err := l.Append(ctxFor(t), job, nil); err != nil {
		t.Errorf("Append of no lines: %v", err)
	}
}

func testAcrossAppends(t *testing.T, l joblog.Log) {
	job := NewJobID()
	b := base()
	appendLines(t, l, job, lines(b, "one", "two"))
	appendLines(t, l, job, lines(b.Add(time.Second), "three"))
	appendLines(t, l, job, lines(b.Add(2*time.Second), "four", "five"))
	got := readAll(t, l, job)
	checkIncreasing(t, got)
	if want := []string{"one", "two", "three", "four", "five"}; fmt.Sprint(texts(got)) != fmt.Sprint(want) {
		t.Errorf("lines = %q, want %q", texts(got), want)
	}
}

func testFollow(t *testing.T, l joblog.Log) {
	job := NewJobID()
	b := base()
	var want []string
	for i := range 7 {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	appendLines(t, l, job, lines(b, want...))
	var got []string
	after := int64(0)
	for page := 0; page < 10; page++ {
		ls, err := l.Read(ctxFor(t), job, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) > 3 {
			t.Fatalf("Read limit 3 returned %d lines", len(ls))
		}
		if len(ls) == 0 {
			break
		}
		checkIncreasing(t, ls)
		if ls[0].Seq <= after {
			t.Fatalf("Read after %d returned seq %d", after, ls[0].Seq)
		}
		got = append(got, texts(ls)...)
		after = ls[len(ls)-1].Seq
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("followed lines = %q, want %q", got, want)
	}
	// New lines arrive after the last seen seq, and only they.
	appendLines(t, l, job, lines(b.Add(time.Second), "late 1", "late 2"))
	ls, err := l.Read(ctxFor(t), job, after, 10)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(texts(ls)) != fmt.Sprint([]string{"late 1", "late 2"}) {
		t.Errorf("after seq %d read %q, want the two late lines", after, texts(ls))
	}
}

func testGivenSeq(t *testing.T, l joblog.Log) {
	job := NewJobID()
	b := base()
	in := []joblog.Line{{Seq: 10, Time: b, Text: "ten"}, {Seq: 11, Time: b, Text: "eleven"}}
	appendLines(t, l, job, in)
	appendLines(t, l, job, lines(b.Add(time.Second), "next"))
	got := readAll(t, l, job)
	if len(got) != 3 || got[0].Seq != 10 || got[1].Seq != 11 || got[2].Seq <= 11 || got[2].Text != "next" {
		t.Errorf("lines = %+v, want seq 10, 11, then a higher one", got)
	}
	if ls, err := l.Read(ctxFor(t), job, 10, 10); err != nil || len(ls) != 2 || ls[0].Text != "eleven" {
		t.Errorf("Read after 10 = %+v, %v", ls, err)
	}
}

func testIsolated(t *testing.T, l joblog.Log) {
	a, b := NewJobID(), NewJobID()
	appendLines(t, l, a, lines(base(), "a1", "a2"))
	appendLines(t, l, b, lines(base(), "b1"))
	appendLines(t, l, a, lines(base().Add(time.Second), "a3"))
	if got := texts(readAll(t, l, a)); fmt.Sprint(got) != fmt.Sprint([]string{"a1", "a2", "a3"}) {
		t.Errorf("job a lines = %q", got)
	}
	if got := texts(readAll(t, l, b)); fmt.Sprint(got) != fmt.Sprint([]string{"b1"}) {
		t.Errorf("job b lines = %q", got)
	}
}

func testText(t *testing.T, l joblog.Log) {
	job := NewJobID()
	in := []string{
		"[TRACE:0f8e] übertragen: 12 Tabellen — 100 % ✓",
		"tab\tseparated\tvalues",
		`quotes "double" and 'single' and \backslash\`,
		"{\"json\":\"looking\",\"n\":1}",
		strings.Repeat("long line ", 800),
		"   leading and trailing spaces   ",
	}
	appendLines(t, l, job, lines(base(), in...))
	got := readAll(t, l, job)
	if len(got) != len(in) {
		t.Fatalf("read %d lines, want %d", len(got), len(in))
	}
	for i := range in {
		if got[i].Text != in[i] {
			t.Errorf("line %d = %q, want %q", i, got[i].Text, in[i])
		}
	}
}

func testZeroTime(t *testing.T, l joblog.Log) {
	job := NewJobID()
	before := time.Now().Add(-time.Second)
	appendLines(t, l, job, []joblog.Line{{Text: "no time given"}})
	after := time.Now().Add(time.Second)
	got := readAll(t, l, job)
	if len(got) != 1 || got[0].Time.Before(before) || got[0].Time.After(after) {
		t.Errorf("line without a time read back as %+v, want a time between %v and %v", got, before, after)
	}
}

func testURL(t *testing.T, l joblog.Log) {
	job := NewJobID()
	for _, worker := range []string{"worker-1", ""} {
		u := l.URL(job, worker)
		if u != "" && !strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "https://") {
			t.Errorf("URL(%s, %q) = %q: want empty, an API path or an https link", job, worker, u)
		}
		if strings.ContainsAny(u, " \n") {
			t.Errorf("URL(%s, %q) = %q contains white space", job, worker, u)
		}
	}
}
