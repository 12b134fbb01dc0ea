// Package hint attaches a user-facing fix ("Try: …") to an error and
// classifies errors into the few kinds the CLI and the API act on.
//
// Errors are wrapped once per layer with fmt.Errorf("…: %w"); a hint is
// attached where the fix is known, and the single printer at the top
// (internal/cli) prints "Error: <err>" and "Try: <hint>".
package hint

import "errors"

// Error carries a fix for the wrapped error.
type Error struct {
	Err  error
	Hint string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Wrap returns err with a hint attached. A nil err stays nil.
func Wrap(err error, fix string) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, Hint: fix}
}

// Of returns the outermost hint attached to err, or "".
func Of(err error) string {
	var h *Error
	if errors.As(err, &h) {
		return h.Hint
	}
	return ""
}
