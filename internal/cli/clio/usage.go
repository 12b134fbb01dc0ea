package clio

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// FlagError turns a flag parse error into a usage error in words: a bad
// value names the flag and what it wants (not strconv's message), an
// unknown flag offers the closest ones.
func FlagError(c *cobra.Command, err error) error {
	see := fmt.Sprintf(" (see %s --help)", c.CommandPath())
	var iv *pflag.InvalidValueError
	if errors.As(err, &iv) {
		f := iv.GetFlag()
		want := wantFor(f)
		msg := fmt.Sprintf("--%s %q: %s", f.Name, iv.GetValue(), want)
		if want == "" {
			msg = fmt.Sprintf("--%s %q: %v", f.Name, iv.GetValue(), errors.Unwrap(iv))
		}
		return Usagef("%s%s", msg, see)
	}
	var ne *pflag.NotExistError
	if errors.As(err, &ne) {
		name := ne.GetSpecifiedName()
		if s := ne.GetSpecifiedShortnames(); s != "" || len(name) == 1 {
			return Usagef("unknown flag -%s%s", name, see)
		}
		msg := "unknown flag --" + name
		if sug := suggestFlags(c, name); len(sug) > 0 {
			msg += "; did you mean " + strings.Join(sug, " or ") + "?"
		}
		return Usagef("%s%s", msg, see)
	}
	return Usagef("%v%s", err, see)
}

// wantFor says in words what a flag of f's type accepts.
func wantFor(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "want a whole number"
	case "float32", "float64":
		return "want a number"
	case "bool":
		return "want true or false"
	case "duration":
		return "want a duration such as 90s, 5m or 1h30m (or plain seconds)"
	}
	return ""
}

func suggestFlags(c *cobra.Command, name string) []string {
	var out []string
	seen := map[string]bool{}
	visit := func(f *pflag.Flag) {
		if f.Hidden || seen[f.Name] {
			return
		}
		seen[f.Name] = true
		if d := distance(name, f.Name); d <= max(2, len(name)/4) || strings.HasPrefix(f.Name, name) {
			out = append(out, "--"+f.Name)
		}
	}
	c.Flags().VisitAll(visit)
	c.InheritedFlags().VisitAll(visit)
	sort.Strings(out)
	if len(out) > 3 {
		out = out[:3]
	}
	return out
}

// UnknownCommand is the Args rule of a command group (root, keys, jobs):
// an argument that names no subcommand is a usage error with suggestions,
// no argument prints the help.
func UnknownCommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if sug := c.SuggestionsFor(args[0]); len(sug) > 0 {
		msg += "; did you mean " + strings.Join(sug, " or ") + "?"
	}
	return Usagef("%s (see %s --help)", msg, c.CommandPath())
}

// StrictArgs makes every command's argument errors usage errors (exit 2):
// cobra returns them as plain errors. Command groups without a Run get
// UnknownCommand.
func StrictArgs(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = UnknownCommand
		c.RunE = func(c *cobra.Command, args []string) error {
			if err := UnknownCommand(c, args); err != nil {
				return err
			}
			return c.Help()
		}
	} else if c.Args != nil {
		inner := c.Args
		c.Args = func(c *cobra.Command, args []string) error {
			if err := inner(c, args); err != nil {
				return Usagef("%v (see %s --help)", err, c.CommandPath())
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		StrictArgs(sub)
	}
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Closest returns the candidate nearest to s when it is near enough to be
// a likely typo, or "".
func Closest(s string, candidates []string) string {
	best, bestD := "", max(2, len(s)/4)+1
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if d := distance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}
