// Package jsonscan checks that bytes are one JSON value, without recursion
// and with a bound on nesting.
//
// Why not gjson.Valid: it recurses once per nesting level with no limit, so
// half a megabyte of "[" overflows the stack of a Wasm VM (a trap kills the
// VM) and, before that, grows a Go stack that linear memory never gives
// back. Check keeps one byte per open container in a slice bounded by
// maxDepth, so its cost is linear in the input and its memory in maxDepth.
//
// The grammar is RFC 8259 plus what Python's json module (which vLLM reads
// requests with) also accepts: the literals NaN, Infinity and -Infinity.
// Like Python's default (strict) decoder it refuses control characters
// inside strings. It does not check UTF-8: vLLM refuses such a body itself.
package jsonscan

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// DefaultMaxDepth is the nesting depth real LLM requests stay far below
// (messages > content parts > tool schemas reach about 10-20) and that every
// reader in the filter accepts by default.
const DefaultMaxDepth = 128

// ErrTooDeep is returned (wrapped) when nesting exceeds the limit.
var ErrTooDeep = errors.New("JSON nesting exceeds the depth limit")

// ErrInvalid is returned (wrapped) for bytes that are not one JSON value.
var ErrInvalid = errors.New("not valid JSON")

// Check reports whether b is exactly one JSON value (surrounded by optional
// whitespace) nested at most maxDepth containers deep. Errors wrap
// ErrTooDeep or ErrInvalid and say at which byte offset.
func Check(b []byte, maxDepth int) error { return check(b, maxDepth, nil) }

// Members is Check that also calls member for each member of a top-level
// object, in order, with its key (quotes and escapes included) and its
// value's bytes; for any other top-level value it calls nothing. It lets a
// caller read an object's members in the same pass that checks it. member
// may be called before an error further on is found: when Members returns
// an error, discard what member saw.
func Members(b []byte, maxDepth int, member func(key, value []byte)) error {
	return check(b, maxDepth, member)
}

func check(b []byte, maxDepth int, member func(key, value []byte)) error {
	var m span // the top-level member being read
	var small [32]byte
	stack := small[:0] // '{' or '[' per open container
	i := skipSpace(b, 0)
	// expectValue: a value must come next (start, after ':' or ',', or the
	// first element of a container when allowClose says it may be empty).
	for {
		// A value.
		if i >= len(b) {
			return invalid(i, "unexpected end")
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) >= maxDepth {
				return fmt.Errorf("%w (%d) at byte %d", ErrTooDeep, maxDepth, i)
			}
			stack = append(stack, c)
			i = skipSpace(b, i+1)
			if i < len(b) && (c == '[' && b[i] == ']' || c == '{' && b[i] == '}') {
				stack = stack[:len(stack)-1]
				i++
				break // an empty container is a complete value
			}
			if c == '{' {
				var err error
				if i, err = m.key(b, i, member != nil && len(stack) == 1); err != nil {
					return err
				}
			}
			continue // its first value
		case c == '"':
			var err error
			if i, err = str(b, i); err != nil {
				return err
			}
		case c == '-' || c >= '0' && c <= '9':
			var err error
			if i, err = number(b, i); err != nil {
				return err
			}
		default:
			var ok bool
			if i, ok = literal(b, i); !ok {
				return invalid(i, "unexpected character")
			}
		}
		// After a complete value: close containers, or go on to the next.
		for {
			if m.open && len(stack) == 1 {
				member(b[m.key0:m.key1], b[m.value:i])
				m.open = false
			}
			i = skipSpace(b, i)
			if len(stack) == 0 {
				if i != len(b) {
					return invalid(i, "data after the value")
				}
				return nil
			}
			if i >= len(b) {
				return invalid(i, "unexpected end")
			}
			top := stack[len(stack)-1]
			switch {
			case b[i] == ',':
				i = skipSpace(b, i+1)
				if top == '{' {
					var err error
					if i, err = m.key(b, i, member != nil && len(stack) == 1); err != nil {
						return err
					}
				}
			case top == '[' && b[i] == ']' || top == '{' && b[i] == '}':
				stack = stack[:len(stack)-1]
				i++
				continue
			default:
				return invalid(i, "want ',' or a closing bracket")
			}
			break
		}
	}
}

func invalid(at int, what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrInvalid, what, at)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// span is where a top-level member's key and value start.
type span struct {
	key0, key1, value int
	open              bool // its value has not ended yet
}

// key reads a key at i and, if top, marks where its member starts.
func (m *span) key(b []byte, i int, top bool) (int, error) {
	next, end, err := key(b, i)
	if err == nil && top {
		*m = span{key0: i, key1: end, value: next, open: true}
	}
	return next, err
}

// key reads `"name" :` and the space after it; end is just past the
// name's closing quote.
func key(b []byte, i int) (next, end int, err error) {
	if i >= len(b) || b[i] != '"' {
		return i, i, invalid(i, "want a string key")
	}
	if i, err = str(b, i); err != nil {
		return i, i, err
	}
	end = i
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return i, end, invalid(i, "want ':'")
	}
	return skipSpace(b, i+1), end, nil
}

// plain marks the bytes a string holds with no further look: everything
// but the quote, the backslash and control characters.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainWord reports whether all 8 bytes of x are plain, without a branch
// per byte (each term is nonzero iff some byte is '"', '\\' or below 0x20).
func plainWord(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := x ^ (ones * '"')
	slash := x ^ (ones * '\\')
	return ((quote-ones)&^quote|(slash-ones)&^slash|(x-ones*0x20)&^x)&highs == 0
}

// str reads a string starting at its opening quote.
func str(b []byte, i int) (int, error) {
	for i++; i < len(b); i++ {
		for i+8 <= len(b) && plainWord(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i == len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, nil
		case c < 0x20:
			return i, invalid(i, "control character in a string")
		case c == '\\':
			i++
			if i >= len(b) {
				return i, invalid(i, "unexpected end")
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return i, invalid(i, `bad \u escape`)
				}
				i += 4
			default:
				return i, invalid(i, "bad escape")
			}
		}
	}
	return i, invalid(i, "unterminated string")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, or -Infinity.
func number(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
		if j, ok := word(b, i, "Infinity"); ok {
			return j, nil
		}
	}
	digits := func() bool {
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > s
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return i, invalid(start, "bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return i, invalid(start, "bad number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return i, invalid(start, "bad number")
		}
	}
	return i, nil
}

func literal(b []byte, i int) (int, bool) {
	for _, w := range [...]string{"true", "false", "null", "NaN", "Infinity"} {
		if j, ok := word(b, i, w); ok {
			return j, true
		}
	}
	return i, false
}

func word(b []byte, i int, w string) (int, bool) {
	if len(b)-i < len(w) || string(b[i:i+len(w)]) != w {
		return i, false
	}
	return i + len(w), true
}
