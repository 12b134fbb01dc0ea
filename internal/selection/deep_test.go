package selection

import (
	"strings"
	"testing"
)

// TestDeepPredicateIsAnError: deeply nested input is refused with an
// error, not a crash (parser stack, protobuf recursion, our walker).
func TestDeepPredicateIsAnError(t *testing.T) {
	// Redundant parentheses leave no trace in the parse tree.
	if got, err := checkPredicate(strings.Repeat("(", 2000) + "x" + strings.Repeat(")", 2000) + " = 1"); err != nil || got != "x = 1" {
		t.Errorf("nested parentheses: %q, %v; want x = 1", got, err)
	}
	for _, in := range []string{
		"x = " + strings.Repeat("1 + ", 4000) + "1",
		strings.Repeat("NOT ", 5000) + "x",
		"x = " + strings.Repeat("lower(", 2000) + "'a'" + strings.Repeat(")", 2000),
		// just inside the length limit: as deep as the parser can be made to go
		"x = " + strings.Repeat("1+", (maxPredicateLen-5)/2) + "1",
		strings.Repeat("NOT ", (maxPredicateLen-1)/4) + "x",
		"x = " + strings.Repeat("- ", (maxPredicateLen-5)/2) + "y",
	} {
		if _, err := checkPredicate(in); err == nil {
			t.Errorf("checkPredicate(%.40q...) accepted; want an error", in)
		}
	}
}
