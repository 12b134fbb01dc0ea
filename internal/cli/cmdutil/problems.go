package cmdutil

import (
	"fmt"
	"io"
	"strings"

	"github.com/serenorg/postgres-seren-replicator/internal/logical"
)

// WriteProblems prints validation problems, each with where it is, what
// it means and its fix (validate, and init before it asks).
func WriteProblems(w io.Writer, ps []logical.Problem) error {
	for _, p := range ps {
		where := p.Server
		if p.Database != "" {
			where += " database " + p.Database
		}
		if p.Object != "" {
			where += ", " + p.Object
		}
		if _, err := fmt.Fprintf(w, "%-7s  %s\n         %s\n         fix: %s\n",
			strings.ToUpper(string(p.Severity)), where, p.Message, p.Fix); err != nil {
			return err
		}
	}
	return nil
}
