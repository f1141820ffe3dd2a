package stats

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestStateValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B"},
		{"modèle-é", "modèle-é"},
		{"a\nGET / 200 forged", `a\x0aGET / 200 forged`},
		{"a\r\x00\x7f", `a\x0d\x00\x7f`},
		{`back\slash`, `back\x5cslash`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"", ""},
	} {
		require.Equal(t, tc.want, StateValue(tc.in), "%q", tc.in)
	}
	long := StateValue(strings.Repeat("m", 1<<20))
	require.Len(t, long, MaxStateLen)
	require.True(t, strings.HasSuffix(long, "..."))
	require.Equal(t, strings.Repeat("m", 300)[:MaxStateLen], StateValue(strings.Repeat("m", MaxStateLen)))
}

func FuzzStateValue(f *testing.F) {
	f.Add("model\n")
	f.Add(strings.Repeat("é", 200))
	f.Fuzz(func(t *testing.T, s string) {
		v := StateValue(s)
		if len(v) > MaxStateLen || !utf8.ValidString(v) {
			t.Fatalf("%q -> %q", s, v)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] == 0x7f {
				t.Fatalf("%q -> %q holds a control byte", s, v)
			}
		}
		if len(s) <= MaxStateLen && !strings.ContainsAny(s, "\\") && v != s && printable(s) {
			t.Fatalf("a printable value changed: %q -> %q", s, v)
		}
	})
}
