// Package sse frames a Server-Sent Events byte stream that arrives in chunks
// split at arbitrary offsets. It keeps only the unfinished tail between
// chunks, bounded by MaxEvent.
//
// Lines end with CRLF, LF or a bare CR, and an empty line ends an event
// (WHATWG HTML, "Parsing an event stream": end-of-line = ( cr lf / cr / lf ),
// https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream).
package sse

import "bytes"

// Framer cuts a stream into events. The zero value is not usable: set
// MaxEvent with New.
//
// The scan state is kept across chunks, so a chunk is scanned once, however
// the stream is cut, and a line ending split between two chunks (CR | LF) is
// one line ending.
type Framer struct {
	maxEvent int
	tail     []byte
	// skipping is set after an oversized event was given up on: bytes are
	// passed through unobserved until the next event boundary.
	skipping bool
	// midLine: the last byte scanned was not a line ending (the next line
	// ending ends a non-empty line, not the event).
	midLine bool
	// afterCR: the last byte scanned was a CR, so an LF next is the second
	// half of a CRLF, not a line ending of its own.
	afterCR bool
	// danglingCR: the last event ended with a CR that was the last byte of
	// its chunk. An LF first in the next chunk completes that CRLF and goes
	// where the event went: forwarded when danglingKept, else dropped.
	// Dispatching at the CR, instead of waiting for the next byte, keeps a
	// CR-framed stream from being delayed by one chunk.
	danglingCR, danglingKept bool
	// Oversized counts events larger than MaxEvent (passed, not observed).
	Oversized int
}

// New returns a Framer that observes events of at most maxEvent bytes.
func New(maxEvent int) *Framer { return &Framer{maxEvent: maxEvent} }

// Observe frames chunk and calls fn with every complete event's bytes (its
// terminating blank line included; when a CRLF ending the event is split
// between chunks, fn sees the event up to the CR and the LF follows it: see
// danglingCR). The stream itself is not changed. fn must not keep ev.
func (f *Framer) Observe(chunk []byte, fn func(event []byte) bool) {
	f.feed(chunk, nil, false, fn)
}

// Rewrite frames chunk like Observe, and appends to out the bytes to forward
// now: the events for which fn returned true, in order. The unfinished tail
// is held back until its event completes (or Flush), so the caller forwards
// out in place of chunk.
func (f *Framer) Rewrite(out, chunk []byte, fn func(event []byte) bool) []byte {
	return f.feed(chunk, out, true, fn)
}

func (f *Framer) feed(chunk []byte, out []byte, build bool, fn func(event []byte) bool) []byte {
	if f.danglingCR && len(chunk) > 0 {
		f.danglingCR = false
		if chunk[0] == '\n' {
			if build && f.danglingKept {
				out = append(out, '\n')
			}
			chunk = chunk[1:]
		}
	}
	start := 0 // the current event's first byte in chunk (earlier ones are in f.tail)
	eol := newLineEnds()
	for i := 0; i < len(chunk); {
		k := i // a line ending right after another (a blank line) needs no search
		if c := chunk[i]; c != '\r' && c != '\n' {
			k = eol.next(chunk, i)
		}
		if k < 0 {
			f.midLine, f.afterCR = true, false
			break
		}
		if k > i {
			f.midLine, f.afterCR = true, false
		}
		c := chunk[k]
		i = k + 1
		if c == '\n' && f.afterCR {
			f.afterCR = false // CRLF: its LF
			continue
		}
		f.afterCR = c == '\r'
		if f.midLine {
			f.midLine = false // the end of a non-empty line
			continue
		}
		// An empty line: the event ends with it, and with the LF of its
		// CRLF when that is here; when the CR is the chunk's last byte, the
		// LF may come first in the next chunk.
		dangling := false
		if c == '\r' {
			if i < len(chunk) {
				if chunk[i] == '\n' {
					i++
				}
				f.afterCR = false
			} else {
				dangling = true
			}
		}
		var kept bool
		out, kept = f.event(out, chunk[start:i], build, fn)
		if dangling {
			f.afterCR, f.danglingCR, f.danglingKept = false, true, kept
		}
		start = i
	}
	rest := chunk[start:]
	switch {
	case f.skipping:
		// Inside an oversized event: pass the bytes on, keep nothing.
		if build {
			out = append(out, rest...)
		}
	case len(f.tail)+len(rest) > f.maxEvent:
		f.Oversized++
		f.skipping = true
		if build {
			out = append(append(out, f.tail...), rest...)
		}
		f.tail = f.tail[:0]
	default:
		f.tail = append(f.tail, rest...)
	}
	if len(f.tail) == 0 && cap(f.tail) > 64<<10 {
		f.tail = nil // do not keep a large buffer for the stream's life
	}
	return out
}

// event handles one complete event whose last bytes are end (the earlier
// ones are in f.tail), and reports whether its bytes were forwarded.
func (f *Framer) event(out, end []byte, build bool, fn func(event []byte) bool) ([]byte, bool) {
	if f.skipping {
		// The end of an oversized event: forwarded, not observed.
		f.skipping = false
		if build {
			out = append(out, end...)
		}
		return out, true
	}
	ev := end // the common case: the whole event is in this chunk, no copy
	if len(f.tail) > 0 {
		f.tail = append(f.tail, end...)
		ev = f.tail
	}
	keep := fn(ev)
	if keep && build {
		out = append(out, ev...)
	}
	f.tail = f.tail[:0]
	return out, keep
}

// Flush ends the stream: an unterminated tail is offered to fn as a last
// event and, if kept, appended to out (observe-only callers pass build false).
func (f *Framer) Flush(out []byte, build bool, fn func(event []byte) bool) []byte {
	if len(f.tail) > 0 && !f.skipping {
		if fn(f.tail) && build {
			out = append(out, f.tail...)
		}
	}
	f.tail, f.skipping, f.midLine, f.afterCR, f.danglingCR = nil, false, false, false, false
	return out
}

// Pending is the number of bytes held back.
func (f *Framer) Pending() int { return len(f.tail) }

// lineEnds finds the line endings in one chunk. It remembers where the
// next CR and the next LF are and searches again for one only once it is
// passed, so each byte is searched at most once for each: a CR-only stream
// does not search to the chunk's end for an LF at every line, nor an
// LF-only stream for a CR. Start with newLineEnds.
type lineEnds struct {
	cr, lf int // the next CR / LF at or after the last from; len(b) if none
}

func newLineEnds() lineEnds { return lineEnds{cr: -1, lf: -1} }

// next returns the offset of the first CR or LF in b at or after from, or -1.
func (e *lineEnds) next(b []byte, from int) int {
	if e.lf < from {
		e.lf = indexFrom(b, from, '\n')
	}
	if e.cr < from {
		e.cr = indexFrom(b, from, '\r')
	}
	if k := min(e.cr, e.lf); k < len(b) {
		return k
	}
	return -1
}

// indexFrom is the offset of c in b at or after from, or len(b).
func indexFrom(b []byte, from int, c byte) int {
	if j := bytes.IndexByte(b[from:], c); j >= 0 {
		return from + j
	}
	return len(b)
}

// Data returns the event's data: the values of its "data:" lines joined by
// "\n" (one optional space after the colon is dropped). Lines end with CRLF,
// LF or CR. Single-line events, the common case, return a sub-slice of ev
// without copying.
func Data(ev []byte) []byte {
	var first []byte
	var joined []byte
	n := 0
	for len(ev) > 0 {
		line := ev
		if i := bytes.IndexAny(ev, "\r\n"); i >= 0 {
			n := 1
			if ev[i] == '\r' && i+1 < len(ev) && ev[i+1] == '\n' {
				n = 2 // CRLF
			}
			line, ev = ev[:i], ev[i+n:]
		} else {
			ev = nil
		}
		if !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		v := line[5:]
		if len(v) > 0 && v[0] == ' ' {
			v = v[1:]
		}
		switch n {
		case 0:
			first = v
		case 1:
			joined = append(append(append(joined, first...), '\n'), v...)
		default:
			joined = append(append(joined, '\n'), v...)
		}
		n++
	}
	if n > 1 {
		return joined
	}
	return first
}
