package verifier_test

import (
	"testing"

	"github.com/serenorg/postgres-seren-replicator/internal/verifier"
)

func TestFormatRangeAndKey(t *testing.T) {
	cases := []struct {
		cols     []string
		r        verifier.KeyRange
		key      []string
		rng, kst string
	}{
		{[]string{"id"}, verifier.KeyRange{From: []string{"10"}, To: []string{"20"}}, []string{"15"}, "id >= 10 AND id < 20", "id=15"},
		{[]string{"id"}, verifier.KeyRange{To: []string{"20"}}, []string{"1"}, "id < 20", "id=1"},
		{[]string{"id"}, verifier.KeyRange{From: []string{"10"}}, []string{"99"}, "id >= 10", "id=99"},
		{[]string{"id"}, verifier.KeyRange{}, []string{"1"}, "all rows", "id=1"},
		{[]string{"a", "b"}, verifier.KeyRange{From: []string{"1", "x"}, To: []string{"2", "y"}}, []string{"1", "z"}, "(a, b) >= (1, x) AND (a, b) < (2, y)", "(a, b)=(1, z)"},
	}
	for _, c := range cases {
		if got := verifier.FormatRange(c.cols, c.r); got != c.rng {
			t.Errorf("FormatRange(%v, %+v) = %q, want %q", c.cols, c.r, got, c.rng)
		}
		if got := verifier.FormatKey(c.cols, c.key); got != c.kst {
			t.Errorf("FormatKey(%v, %v) = %q, want %q", c.cols, c.key, got, c.kst)
		}
	}
}
