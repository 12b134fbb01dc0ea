package cmdutil

import (
	"fmt"
	"io"
	"strings"

	"github.com/serenorg/postgres-seren-replicator/internal/logical"
)

// WriteProblems prints validation problems, each with where it is, what
// it means and its fix (validate, and init before it asks). With color
// the severity is red (BLOCKER) or yellow (WARNING).
func WriteProblems(w io.Writer, ps []logical.Problem, color bool) error {
	for _, p := range ps {
		where := p.Server
		if p.Database != "" {
			where += " database " + p.Database
		}
		if p.Object != "" {
			where += ", " + p.Object
		}
		label := fmt.Sprintf("%-7s", strings.ToUpper(string(p.Severity)))
		if color {
			code := "33" // yellow
			if p.Severity == logical.Blocker {
				code = "1;31" // bold red
			}
			label = "\x1b[" + code + "m" + label + "\x1b[0m"
		}
		if _, err := fmt.Fprintf(w, "%s  %s\n         %s\n         fix: %s\n", label, where, p.Message, p.Fix); err != nil {
			return err
		}
	}
	return nil
}
