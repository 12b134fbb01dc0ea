// Package iostreams carries stdin/stdout/stderr and terminal detection, so
// a command prints tables and prompts on a terminal and stable data when
// piped, and is tested both ways.
package iostreams

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"
)

// IOStreams is the I/O a command may use. stdout is data, stderr is talk.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	// Verbose asks for more detail (-v).
	Verbose bool

	inTTY, outTTY, errTTY bool
	talk                  io.Writer // stderr before SetQuiet: prompts and errors
	once                  sync.Once
	lines                 chan lineOrErr // fed by one reader, so answers are not lost to read-ahead
}

// readLine returns the next line of input without its newline. It
// returns ctx's error when ctx ends first (Ctrl-C at a prompt) and io.EOF
// at the end of input. One goroutine reads ahead line by line, so an
// abandoned read loses no answer and never blocks the caller.
func (s *IOStreams) readLine(ctx context.Context) (string, error) {
	s.once.Do(func() {
		s.lines = make(chan lineOrErr)
		go func() {
			r := bufio.NewReader(s.In)
			for {
				line, err := r.ReadString('\n')
				if line != "" || err == nil {
					s.lines <- lineOrErr{line: strings.TrimRight(line, "\r\n")}
				}
				if err != nil {
					if !errors.Is(err, io.EOF) {
						err = fmt.Errorf("read answer: %w", err)
					}
					for {
						s.lines <- lineOrErr{err: err}
					}
				}
			}
		}()
	})
	select {
	case <-ctx.Done():
		fmt.Fprintln(s.ErrWriter())
		return "", ctx.Err()
	case l := <-s.lines:
		return strings.TrimSpace(l.line), l.err
	}
}

type lineOrErr struct {
	line string
	err  error
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

// SetQuiet silences talk on stderr (-q): progress, notes and warnings go
// nowhere; prompts and errors still reach the user.
func (s *IOStreams) SetQuiet() {
	if s.talk == nil {
		s.talk = s.ErrOut
		s.ErrOut = io.Discard
	}
}

// ErrWriter is where errors and prompts go: stderr, even under -q.
func (s *IOStreams) ErrWriter() io.Writer {
	if s.talk != nil {
		return s.talk
	}
	return s.ErrOut
}

// ColorOut reports whether stdout may be coloured: a terminal, and
// neither NO_COLOR (https://no-color.org) nor TERM=dumb set.
func (s *IOStreams) ColorOut() bool { return s.outTTY && colorAllowed() }

// ColorErr is ColorOut for stderr.
func (s *IOStreams) ColorErr() bool { return s.errTTY && colorAllowed() }

func colorAllowed() bool { return os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb" }

// ErrNotConfirmed is returned when the user answers no.
var ErrNotConfirmed = errors.New("not confirmed")

// Confirm asks a yes/no question on stderr and reads the answer from
// stdin. End of input is "no"; Ctrl-C returns ctx's error.
func (s *IOStreams) Confirm(ctx context.Context, question string) (bool, error) {
	fmt.Fprintf(s.ErrWriter(), "%s [y/N]: ", question)
	line, err := s.readLine(ctx)
	if errors.Is(err, io.EOF) {
		fmt.Fprintln(s.ErrWriter())
		return false, nil
	}
	if err != nil {
		return false, err
	}
	a := strings.ToLower(line)
	return a == "y" || a == "yes", nil
}

// Ask reads one line after printing prompt on stderr. End of input is
// ErrNotConfirmed (cancel, nothing changed); Ctrl-C returns ctx's error.
func (s *IOStreams) Ask(ctx context.Context, prompt string) (string, error) {
	fmt.Fprint(s.ErrWriter(), prompt)
	line, err := s.readLine(ctx)
	if errors.Is(err, io.EOF) {
		fmt.Fprintln(s.ErrWriter())
		return "", ErrNotConfirmed
	}
	return line, err
}
