// Package sse frames a Server-Sent Events byte stream that arrives in chunks
// split at arbitrary offsets. It keeps only the unfinished tail between
// chunks, bounded by MaxEvent.
package sse

import "bytes"

// Framer cuts a stream into events. The zero value is not usable: set
// MaxEvent with New.
type Framer struct {
	maxEvent int
	tail     []byte
	// skipping is set after an oversized event was given up on: bytes are
	// passed through unobserved until the next event boundary.
	skipping bool
	// Oversized counts events larger than MaxEvent (passed, not observed).
	Oversized int
}

// New returns a Framer that observes events of at most maxEvent bytes.
func New(maxEvent int) *Framer { return &Framer{maxEvent: maxEvent} }

// Observe frames chunk and calls fn with every complete event's bytes (its
// terminating blank line included). The stream itself is not changed.
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
	data := chunk
	if len(f.tail) > 0 {
		f.tail = append(f.tail, chunk...)
		data = f.tail
	}
	start := 0
	for start < len(data) {
		end := boundary(data, start)
		if end < 0 {
			break
		}
		ev := data[start:end]
		if f.skipping {
			f.skipping = false
			if build {
				out = append(out, ev...)
			}
		} else if fn(ev) && build {
			out = append(out, ev...)
		}
		start = end
	}
	rest := data[start:]
	switch {
	case f.skipping:
		// Inside an oversized event: pass the bytes on, keep nothing.
		if build {
			out = append(out, rest...)
		}
		f.tail = f.tail[:0]
	case len(rest) > f.maxEvent:
		f.Oversized++
		f.skipping = true
		if build {
			out = append(out, rest...)
		}
		f.tail = f.tail[:0]
	case len(f.tail) > 0:
		// data aliases f.tail: move the rest to the front.
		f.tail = f.tail[:copy(f.tail, rest)]
	default:
		f.tail = append(f.tail[:0], rest...)
	}
	if len(f.tail) == 0 && cap(f.tail) > 64<<10 {
		f.tail = nil // do not keep a large buffer for the stream's life
	}
	return out
}

// Flush ends the stream: an unterminated tail is offered to fn as a last
// event and, if kept, appended to out (observe-only callers pass build false).
func (f *Framer) Flush(out []byte, build bool, fn func(event []byte) bool) []byte {
	if len(f.tail) > 0 && !f.skipping {
		if fn(f.tail) && build {
			out = append(out, f.tail...)
		}
	}
	f.tail, f.skipping = nil, false
	return out
}

// Pending is the number of bytes held back.
func (f *Framer) Pending() int { return len(f.tail) }

// boundary returns the offset just past the blank line ending the event that
// starts at start, or -1. A blank line is "\n\n", or "\n\r\n" (which covers
// "\r\n\r\n").
func boundary(b []byte, start int) int {
	for i := start; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// Data returns the event's data: the values of its "data:" lines joined by
// "\n" (one optional space after the colon is dropped). Single-line events,
// the common case, return a sub-slice of ev without copying.
func Data(ev []byte) []byte {
	var first []byte
	var joined []byte
	n := 0
	for len(ev) > 0 {
		line := ev
		if i := bytes.IndexByte(ev, '\n'); i >= 0 {
			line, ev = ev[:i], ev[i+1:]
		} else {
			ev = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
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
