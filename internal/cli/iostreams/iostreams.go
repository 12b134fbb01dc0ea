// Package iostreams carries stdin/stdout/stderr and terminal detection, so
// a command prints tables and prompts on a terminal and stable data when
// piped, and is tested both ways.
package iostreams

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// IOStreams is the I/O a command may use. stdout is data, stderr is talk.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	inTTY, outTTY, errTTY bool
	reader                *bufio.Reader // one reader, so answers are not lost to read-ahead
}

func (s *IOStreams) readLine() (string, error) {
	if s.reader == nil {
		s.reader = bufio.NewReader(s.In)
	}
	line, err := s.reader.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read answer: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// System returns the process's streams.
func System() *IOStreams {
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		inTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		outTTY: term.IsTerminal(int(os.Stdout.Fd())),
		errTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}
}

// Test returns streams backed by buffers: (streams, stdin, stdout, stderr).
func Test() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut}, in, out, errOut
}

// SetTTY marks all streams as terminals (tests).
func (s *IOStreams) SetTTY(tty bool) { s.inTTY, s.outTTY, s.errTTY = tty, tty, tty }

// CanPrompt reports whether the user can answer a question.
func (s *IOStreams) CanPrompt() bool { return s.inTTY && s.errTTY }

// IsStderrTTY reports whether talk goes to a terminal (live progress).
func (s *IOStreams) IsStderrTTY() bool { return s.errTTY }

// IsStdoutTTY reports whether data goes to a terminal (tables vs. data).
func (s *IOStreams) IsStdoutTTY() bool { return s.outTTY }

// ErrNotConfirmed is returned when the user answers no.
var ErrNotConfirmed = errors.New("not confirmed")

// Confirm asks a yes/no question on stderr and reads the answer from stdin.
func (s *IOStreams) Confirm(question string) (bool, error) {
	fmt.Fprintf(s.ErrOut, "%s [y/N]: ", question)
	line, err := s.readLine()
	if err != nil {
		return false, err
	}
	a := strings.ToLower(line)
	return a == "y" || a == "yes", nil
}

// Ask reads one line after printing prompt on stderr.
func (s *IOStreams) Ask(prompt string) (string, error) {
	fmt.Fprint(s.ErrOut, prompt)
	return s.readLine()
}
