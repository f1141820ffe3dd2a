// Package jsonenc appends JSON text without reflection, in append style (the
// caller owns the buffer, nothing else is allocated), so the Wasm filter and
// the picker can encode with one implementation.
package jsonenc

import "unicode/utf8"

const hexDigits = "0123456789abcdef"

// AppendString appends s to dst as a JSON string (RFC 8259 §7).
//
// It escapes what RFC 8259 requires: the quotation mark, the reverse
// solidus and the control characters U+0000 to U+001F, using the short
// forms \b \f \n \r \t where there is one and \u00XX for the rest, as
// Go's encoding/json and Python's json.dumps write them. Everything else,
// non-ASCII included, is copied as it is.
//
// Invalid UTF-8 cannot be written as JSON text (RFC 8259 §8.1 requires
// UTF-8, and Python's json.loads refuses such bytes). So, like
// encoding/json.Marshal, each byte utf8.DecodeRuneInString finds invalid
// (stray continuation bytes, truncated sequences, overlong forms, UTF-8
// encoded surrogates) becomes \ufffd. A string of valid UTF-8 reads back
// unchanged in any JSON reader; any other string reads back as
// encoding/json.Marshal would have written it.
//
// It does not escape <, >, & or U+2028/U+2029 as encoding/json does by
// default: JSON does not need it, and no output of ours is embedded in
// HTML or JavaScript source.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied as it is
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size // valid, copied as it is
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
