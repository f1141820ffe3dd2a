// Package capped reads a whole body that must not exceed a size limit, into
// a caller's buffer (so hot paths can reuse pooled buffers).
package capped

import (
	"errors"
	"io"
)

// ErrTooLarge is returned when the reader holds more than the limit; the
// caller, which knows what the body is, words the message.
var ErrTooLarge = errors.New("body too large")

// ReadAll appends r's bytes to dst up to EOF and returns the extended
// buffer. A body of exactly limit bytes (counted from len(dst)) is read
// whole; a longer one fails with ErrTooLarge once limit+1 bytes came, never
// truncated. It reads no more than limit+1 bytes (a peer that keeps sending
// is neither waited for nor buffered), and keeps what it read on every return, so a pooled dst keeps its
// growth. Other errors are r's, as it returned them.
func ReadAll(dst []byte, r io.Reader, limit int64) ([]byte, error) {
	limit = max(limit, 0)
	start := len(dst)
	for {
		room := limit + 1 - int64(len(dst)-start) // > 0: the check below stops at limit+1
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		window := dst[len(dst):cap(dst)]
		if int64(len(window)) > room {
			window = window[:room]
		}
		n, err := r.Read(window)
		dst = dst[:len(dst)+n]
		if int64(len(dst)-start) > limit {
			return dst, ErrTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}
