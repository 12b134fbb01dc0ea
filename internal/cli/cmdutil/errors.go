package cmdutil

import "fmt"

// usage marks a flag/argument error; internal/cli maps it to exit code 2
// through the ExitCode method.
type usage struct{ err error }

func (e *usage) Error() string { return e.err.Error() }
func (e *usage) Unwrap() error { return e.err }

// ExitCode implements cli.ExitCoder.
func (e *usage) ExitCode() int { return 2 }

func usageErr(format string, a ...any) error { return &usage{fmt.Errorf(format, a...)} }

// UsageError wraps err as a usage error (exit code 2).
func UsageError(err error) error { return &usage{err} }

// ExitError carries an explicit exit code (e.g. 3 for "differences found").
type ExitError struct {
	Err  error
	Code int
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode implements cli.ExitCoder.
func (e *ExitError) ExitCode() int { return e.Code }
