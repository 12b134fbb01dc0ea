package clio

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Output is the one output flag of every command: -o/--output table|json,
// with --json as a hidden alias of -o json. With json, stdout holds only
// the document; talk goes to stderr.
type Output struct {
	Format string
	json   bool
}

// Formats are the values of -o.
var Formats = []string{"table", "json"}

// Add registers -o/--output and the hidden --json on cmd.
func (o *Output) Add(cmd *cobra.Command) {
	o.AddTo(cmd, false)
}

// AddPersistent registers the flags on cmd and its subcommands.
func (o *Output) AddPersistent(cmd *cobra.Command) { o.AddTo(cmd, true) }

// AddTo registers the flags, persistent ones when persistent is set.
func (o *Output) AddTo(cmd *cobra.Command, persistent bool) {
	fl := cmd.Flags()
	if persistent {
		fl = cmd.PersistentFlags()
	}
	if o.Format == "" {
		o.Format = "table"
	}
	fl.StringVarP(&o.Format, "output", "o", o.Format, "output format: table or json")
	fl.BoolVar(&o.json, "json", false, "same as -o json")
	_ = fl.MarkHidden("json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(Formats, cobra.ShellCompDirectiveNoFileComp))
}

// Check validates the flag (a usage error for an unknown format).
func (o *Output) Check() error {
	if o.json {
		if o.Format != "table" && o.Format != "json" && o.Format != "" {
			return Usagef("--json and -o %s contradict each other", o.Format)
		}
		o.Format = "json"
	}
	switch o.Format {
	case "", "table":
		o.Format = "table"
		return nil
	case "json":
		return nil
	}
	return Usagef("-o %q: use table or json", o.Format)
}

// JSON reports whether the document is wanted as JSON.
func (o *Output) JSON() bool { return o.json || o.Format == "json" }

// WriteJSON writes v as indented JSON (one document) to w.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// List returns s, or an empty (non-nil) slice so JSON shows [] not null.
func List[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
