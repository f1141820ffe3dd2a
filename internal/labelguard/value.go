package labelguard

// MaxValueLen caps a label value; longer values are cut.
const MaxValueLen = 96

// Unknown stands for an empty or absent value; Other for values the Guard
// refuses.
const (
	Unknown = "unknown"
	Other   = "other"
)

// TagValue makes s safe inside a stat name and a Prometheus label: at most
// MaxValueLen bytes of [A-Za-z0-9._/:-]; every other byte becomes '_'.
// ';' and '=' in particular would break the segment syntax.
func TagValue(s string) string {
	if s == "" {
		return Unknown
	}
	if len(s) > MaxValueLen {
		s = s[:MaxValueLen]
	}
	for i := 0; i < len(s); i++ {
		if !safe(s[i]) {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if !safe(b[j]) {
					b[j] = '_'
				}
			}
			return string(b)
		}
	}
	return s
}

func safe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '/' || c == ':'
}
