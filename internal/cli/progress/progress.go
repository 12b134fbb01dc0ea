// Package progress shows a long operation's progress: a live multi-line
// display on a terminal, plain timestamped log lines when piped. It
// implements replicator.Reporter.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
)

// Printer renders progress to w.
type Printer struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	start time.Time

	mu        sync.Mutex
	p         replicator.Progress
	lines     int // lines of the live display currently drawn
	lastPlain time.Time
	lastBytes int64
	lastAt    time.Time
	rate      float64   // bytes/s, smoothed
	copyFrom  time.Time // when the current database's first bytes were seen
	copyBase  int64     // BytesCopied then
	stop      chan struct{}
	done      chan struct{}
}

// New returns a printer; tty selects the live display.
func New(w io.Writer, tty bool) *Printer {
	p := &Printer{w: w, tty: tty, now: time.Now, stop: make(chan struct{}), done: make(chan struct{})}
	p.start = p.now()
	p.lastAt = p.start
	if tty {
		go p.loop()
	} else {
		close(p.done)
	}
	return p
}

func (p *Printer) loop() {
	defer close(p.done)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.mu.Lock()
			p.clear()
			p.mu.Unlock()
			return
		case <-t.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// Close stops the live display.
func (p *Printer) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// Progress implements replicator.Reporter.
func (p *Printer) Progress(pr replicator.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if dt := now.Sub(p.lastAt).Seconds(); dt >= 1 {
		inst := float64(pr.BytesCopied-p.lastBytes) / dt
		if inst >= 0 {
			if p.rate == 0 {
				p.rate = inst
			} else {
				p.rate = 0.7*p.rate + 0.3*inst
			}
		}
		p.lastBytes, p.lastAt = pr.BytesCopied, now
	}
	if pr.CurrentDatabase != p.p.CurrentDatabase || pr.BytesCopied < p.copyBase {
		p.copyFrom = time.Time{}
	}
	if p.copyFrom.IsZero() && pr.BytesCopied > 0 {
		p.copyFrom, p.copyBase = now, pr.BytesCopied
	}
	if pr.BytesCopied < p.p.BytesCopied && pr.CurrentDatabase == p.p.CurrentDatabase {
		pr.BytesCopied = p.p.BytesCopied
	}
	p.p = pr
	if !p.tty && now.Sub(p.lastPlain) >= 10*time.Second && pr.Phase == "copy" {
		p.lastPlain = now
		fmt.Fprintf(p.w, "%s progress: %s\n", now.Format("15:04:05"), p.summary())
	}
}

// Logf implements replicator.Reporter.
func (p *Printer) Logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.clear()
	}
	fmt.Fprintf(p.w, "%s %s\n", p.now().Format("15:04:05"), fmt.Sprintf(format, args...))
	if p.tty {
		p.draw()
	}
}

func (p *Printer) summary() string {
	pr := p.p
	parts := []string{}
	if pr.CurrentDatabase != "" {
		parts = append(parts, fmt.Sprintf("database %s (%d/%d)", pr.CurrentDatabase, pr.DatabasesCompleted+1, max(pr.DatabasesTotal, 1)))
	}
	if pr.TablesTotal > 0 {
		parts = append(parts, fmt.Sprintf("tables %d/%d", pr.TablesCompleted, pr.TablesTotal))
	}
	if pr.BytesTotal > 0 || pr.BytesCopied > 0 {
		parts = append(parts, fmt.Sprintf("%s of ~%s", replicator.HumanBytes(pr.BytesCopied), replicator.HumanBytes(pr.BytesTotal)))
	}
	if p.rate > 0 {
		parts = append(parts, fmt.Sprintf("%s/s", replicator.HumanBytes(int64(p.rate))))
	}
	// The ETA comes from the rate measured since this database's copy
	// began (not a rate smoothed across idle phases), once there is one.
	if avg := p.measuredRate(); avg > 0 {
		if left := pr.BytesTotal - pr.BytesCopied; left > 0 {
			parts = append(parts, "ETA "+(time.Duration(float64(left)/avg*float64(time.Second))).Round(time.Second).String())
		}
	}
	return strings.Join(parts, ", ")
}

// measuredRate is bytes/s over the current copy, 0 until 2s of it.
func (p *Printer) measuredRate() float64 {
	if p.copyFrom.IsZero() {
		return 0
	}
	dt := p.now().Sub(p.copyFrom).Seconds()
	if dt < 2 {
		return 0
	}
	return float64(p.p.BytesCopied-p.copyBase) / dt
}

func (p *Printer) draw() {
	p.clear()
	pr := p.p
	if pr.Phase == "" {
		return
	}
	elapsed := p.now().Sub(p.start).Round(time.Second)
	lines := []string{
		fmt.Sprintf("  phase: %-8s elapsed %s", pr.Phase, elapsed),
		"  " + p.summary(),
	}
	if pr.BytesTotal > 0 {
		frac := float64(pr.BytesCopied) / float64(pr.BytesTotal)
		if frac > 1 {
			frac = 1
		}
		n := int(frac * 40)
		lines = append(lines, fmt.Sprintf("  [%s%s] %3.0f%%", strings.Repeat("#", n), strings.Repeat(".", 40-n), frac*100))
	}
	for _, l := range lines {
		fmt.Fprintf(p.w, "\r\033[K%s\n", l)
	}
	p.lines = len(lines)
}

func (p *Printer) clear() {
	for i := 0; i < p.lines; i++ {
		fmt.Fprint(p.w, "\033[1A\r\033[K")
	}
	p.lines = 0
}
