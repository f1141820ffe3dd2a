package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress is told how many requests finished (and failed) of total.
type Progress interface {
	Update(done, failed, total int)
	Close()
}

// IsTerminal reports whether f is a character device (a terminal).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// NewProgress returns a tqdm-like bar redrawn in place when tty, else a plain
// line every 10% (and at the end), so logs stay readable.
func NewProgress(w io.Writer, tty bool) Progress {
	return &progress{w: w, tty: tty, start: time.Now(), lastPct: -1}
}

type progress struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	start   time.Time
	drawn   time.Time
	lastPct int
	closed  bool
	done    int
	failed  int
	total   int
}

func (p *progress) Update(done, failed, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.done, p.failed, p.total = done, failed, total
	now := time.Now()
	elapsed := now.Sub(p.start)
	if p.tty {
		// Redraw at most 10 times a second, and always the last one.
		if done < total && done > 0 && now.Sub(p.drawn) < 100*time.Millisecond {
			return
		}
		p.drawn = now
		fmt.Fprint(p.w, "\r"+BarLine(done, failed, total, elapsed, 30))
		return
	}
	pct := 0
	if total > 0 {
		pct = done * 10 / total * 10
	}
	if pct == p.lastPct {
		return
	}
	p.lastPct = pct
	fmt.Fprintln(p.w, PlainLine(done, failed, total, elapsed))
}

func (p *progress) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.tty {
		fmt.Fprint(p.w, "\r"+BarLine(p.done, p.failed, p.total, time.Since(p.start), 30)+"\n")
	}
}

// BarLine is one tqdm-style bar: " 40%|████      | 40/100 [00:04<00:06, 9.95it/s]".
func BarLine(done, failed, total int, elapsed time.Duration, width int) string {
	frac := 0.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	eighths := int(frac * float64(width*8))
	full, part := eighths/8, eighths%8
	bar := strings.Repeat("█", full)
	if full < width {
		bar += string([]rune(" ▏▎▍▌▋▊▉")[part])
		bar += strings.Repeat(" ", width-full-1)
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	eta := "?"
	if rate > 0 {
		eta = clock(time.Duration(float64(total-done) / rate * float64(time.Second)))
	}
	s := fmt.Sprintf("%3d%%|%s| %d/%d [%s<%s, %.2fit/s]", int(frac*100), bar, done, total, clock(elapsed), eta, rate)
	if failed > 0 {
		s += fmt.Sprintf(" %d failed", failed)
	}
	return s
}

// PlainLine is the progress line written when stderr is not a terminal.
func PlainLine(done, failed, total int, elapsed time.Duration) string {
	pct := 0
	if total > 0 {
		pct = done * 100 / total
	}
	return fmt.Sprintf("progress: %d/%d requests (%d%%), %d failed, %.1f s", done, total, pct, failed, elapsed.Seconds())
}

func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}
