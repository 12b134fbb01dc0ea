package jobs

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestStateDocMatchesStateMachine keeps docs/job-states.md true: every
// status with its terminal flag, every legal transition and nothing else,
// each with the constructor that performs it.
func TestStateDocMatchesStateMachine(t *testing.T) {
	raw, err := os.ReadFile("../../docs/job-states.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string][][]string{}
	section := ""
	for _, line := range strings.Split(string(raw), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.TrimSpace(h)
			continue
		}
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		sections[section] = append(sections[section], cells)
	}
	status := func(cell string) (Status, bool) {
		s, ok := strings.CutPrefix(cell, "`")
		s, ok2 := strings.CutSuffix(s, "`")
		return Status(s), ok && ok2 && slices.Contains(AllStatuses, Status(s))
	}

	// Statuses table.
	documented := map[Status]bool{}
	for _, row := range sections["Statuses"][1:] {
		s, ok := status(row[0])
		if !ok {
			t.Errorf("Statuses table lists %q, not a status", row[0])
			continue
		}
		documented[s] = true
		if want := map[bool]string{true: "yes", false: "no"}[s.Terminal()]; row[1] != want {
			t.Errorf("Statuses table: %s terminal %q, want %q", s, row[1], want)
		}
	}
	for _, s := range AllStatuses {
		if !documented[s] {
			t.Errorf("status %s is missing from docs/job-states.md", s)
		}
	}

	constructors := map[string]Transition{
		"jobs.Started":     Started("w"),
		"jobs.Failed":      Failed("x"),
		"jobs.TimedOut":    TimedOut(time.Hour),
		"jobs.Cancelled":   Cancelled(),
		"jobs.Completed":   Completed(nil),
		"jobs.Requeued":    Requeued("x"),
		"jobs.Provisioned": Provisioned("w", "t", ""),
		"jobs.Heartbeat":   Heartbeat(nil),
	}
	fits := func(name string, from, to Status) bool {
		c, ok := constructors[strings.Trim(name, "`")]
		return ok && c.To == to && slices.Contains(c.From, from)
	}

	// Transitions table: exactly the legal pairs.
	type pair struct{ from, to Status }
	seen := map[pair]bool{}
	for _, row := range sections["Transitions"][1:] {
		if row[0] == "(new)" {
			continue
		}
		from, ok1 := status(row[0])
		to, ok2 := status(row[1])
		if !ok1 || !ok2 {
			t.Errorf("Transitions table row %q: not two statuses", row)
			continue
		}
		if !CanTransition(from, to) {
			t.Errorf("docs list %s → %s, which the state machine forbids", from, to)
		}
		if !fits(row[2], from, to) {
			t.Errorf("docs say %s performs %s → %s; it does not", row[2], from, to)
		}
		if row[3] == "" {
			t.Errorf("docs do not say who performs %s → %s", from, to)
		}
		seen[pair{from, to}] = true
	}
	for _, from := range AllStatuses {
		for _, to := range AllStatuses {
			if CanTransition(from, to) && !seen[pair{from, to}] {
				t.Errorf("legal transition %s → %s is missing from docs/job-states.md", from, to)
			}
		}
	}
	// Updates that keep the status.
	for _, row := range sections["Updates that keep the status"][1:] {
		s, ok := status(row[0])
		if !ok || !fits(row[1], s, s) {
			t.Errorf("docs say %s updates a %s job in place; it does not", row[1], row[0])
		}
	}
	if len(sections["Updates that keep the status"]) < 3 {
		t.Errorf("the in-place updates table is missing")
	}
}
