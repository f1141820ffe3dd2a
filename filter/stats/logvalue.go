package stats

import "unicode/utf8"

// MaxStateLen caps a filter-state value (an access-log field). Model names
// and error types are far shorter; a client's 1 MiB "model" is not logged
// whole.
const MaxStateLen = 256

// StateValue makes s safe to print in an access log: at most MaxStateLen
// bytes, valid UTF-8, and no control characters (a newline in a model name
// would otherwise forge a log line). Control bytes, DEL, backslash and
// invalid UTF-8 become \xNN escapes, so the value stays unambiguous; a cut
// value ends in "...".
func StateValue(s string) string {
	if len(s) <= MaxStateLen && printable(s) {
		return s // the common case: no copy
	}
	const hex = "0123456789abcdef"
	out := make([]byte, 0, min(len(s), MaxStateLen)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		var piece []byte
		switch {
		case r == utf8.RuneError && n <= 1, s[i] < 0x20, s[i] == 0x7f, s[i] == '\\':
			piece = []byte{'\\', 'x', hex[s[i]>>4], hex[s[i]&0xf]}
			n = 1
		default:
			piece = []byte(s[i : i+n])
		}
		if len(out)+len(piece) > MaxStateLen-3 {
			return string(append(out, "..."...))
		}
		out = append(out, piece...)
		i += n
	}
	return string(out)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' || c >= 0x80 {
			return c >= 0x80 && utf8.ValidString(s[i:]) && printableRest(s[i:])
		}
	}
	return true
}

// printableRest checks the remainder once non-ASCII was seen.
func printableRest(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}
