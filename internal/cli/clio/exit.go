// Package clio is the CLI's contract with its caller in one place: the
// exit codes (documented in README.md), usage errors, the one error
// printer, and the output flag (-o table|json) with its JSON writer. Every
// command uses it; no command imports another command.
package clio

import (
	"context"
	"errors"
	"fmt"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
)

// Exit codes (README.md "Exit codes"; TestExitCodesMatchREADME keeps the
// two in step).
const (
	ExitOK       = 0   // success
	ExitFailure  = 1   // the operation failed
	ExitUsage    = 2   // bad flags or arguments, unknown command
	ExitProblems = 3   // verify found differences, validate found blockers, status found a set down/broken
	ExitDeclined = 4   // the user answered no at a prompt; nothing was changed
	ExitTimeout  = 124 // worker: the job ran past its timeout
	ExitCanceled = 130 // interrupted (Ctrl-C, SIGTERM)
)

// ExitCoder lets an error choose its exit code.
type ExitCoder interface{ ExitCode() int }

// UsageError marks an error in flags or arguments (exit code 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode implements ExitCoder.
func (e *UsageError) ExitCode() int { return ExitUsage }

// Usage wraps err as a usage error (exit code 2).
func Usage(err error) error { return &UsageError{Err: err} }

// Usagef returns a usage error (exit code 2).
func Usagef(format string, a ...any) error { return &UsageError{Err: fmt.Errorf(format, a...)} }

// ExitError carries an explicit exit code (e.g. ExitProblems).
type ExitError struct {
	Err  error
	Code int
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode implements ExitCoder.
func (e *ExitError) ExitCode() int { return e.Code }

// WithCode returns err carrying exit code code.
func WithCode(code int, err error) error { return &ExitError{Err: err, Code: code} }

// ErrDeclined is returned when the user answers no (exit code 4).
var ErrDeclined = iostreams.ErrNotConfirmed

// Code maps err to its exit code.
func Code(err error) int {
	var ec ExitCoder
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrDeclined):
		return ExitDeclined
	case errors.As(err, &ec):
		return ec.ExitCode()
	case errors.Is(err, context.Canceled):
		return ExitCanceled
	}
	return ExitFailure
}

// PrintError prints err as "Error: …" with its hint as "Try: …" on
// stderr and returns its exit code.
func PrintError(ios *iostreams.IOStreams, err error) int {
	code := Code(err)
	w := ios.ErrWriter()
	if code == ExitDeclined {
		fmt.Fprintln(w, "Aborted: nothing was changed.")
		return code
	}
	fmt.Fprintf(w, "Error: %v\n", err)
	if h := hint.Of(err); h != "" {
		fmt.Fprintf(w, "Try: %s\n", h)
	}
	return code
}
