package jsonscan

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in    string
		depth int
		want  error // nil, ErrInvalid or ErrTooDeep
	}{
		{`{}`, 1, nil},
		{` {"a" : [1, -2.5e+3, "x\u00e9\n", true, false, null, {}, []]} `, 3, nil},
		{`"just a string"`, 0, nil},
		{`0`, 0, nil},
		{`-0.0E-0`, 0, nil},
		{`NaN`, 0, nil}, // Python's json accepts it
		{`[Infinity,-Infinity]`, 1, nil},
		{`[[[]]]`, 3, nil},
		{`[[[]]]`, 2, ErrTooDeep},
		{`{"a":{"b":{}}}`, 2, ErrTooDeep},
		{``, 8, ErrInvalid},
		{`   `, 8, ErrInvalid},
		{`{`, 8, ErrInvalid},
		{`{"a"}`, 8, ErrInvalid},
		{`{"a":}`, 8, ErrInvalid},
		{`{"a":1,}`, 8, ErrInvalid},
		{`[1,]`, 8, ErrInvalid},
		{`[1 2]`, 8, ErrInvalid},
		{`{1:2}`, 8, ErrInvalid},
		{`{"a":1}}`, 8, ErrInvalid},
		{`{"a":1} x`, 8, ErrInvalid},
		{`01`, 8, ErrInvalid},
		{`1.`, 8, ErrInvalid},
		{`.5`, 8, ErrInvalid},
		{`1e`, 8, ErrInvalid},
		{`+1`, 8, ErrInvalid},
		{`-`, 8, ErrInvalid},
		{`-NaN`, 8, ErrInvalid},
		{`"a` + "\n" + `b"`, 8, ErrInvalid}, // strict: no raw control characters
		{`"\x"`, 8, ErrInvalid},
		{`"\u12"`, 8, ErrInvalid},
		{`"unterminated`, 8, ErrInvalid},
		{`"ends in escape\`, 8, ErrInvalid},
		{`tru`, 8, ErrInvalid},
		{`nulls`, 8, ErrInvalid},
		{`[}`, 8, ErrInvalid},
		{`{]`, 8, ErrInvalid},
		{"\xef\xbb\xbf{}", 8, ErrInvalid}, // a BOM is not whitespace
	} {
		err := Check([]byte(tc.in), tc.depth)
		if tc.want == nil {
			require.NoError(t, err, "%q", tc.in)
		} else {
			require.ErrorIs(t, err, tc.want, "%q", tc.in)
		}
	}
}

// Deep nesting costs linear time and no stack: far past any Wasm stack.
func TestCheckDeep(t *testing.T) {
	deep := strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20)
	require.NoError(t, Check([]byte(deep), 1<<20))
	require.ErrorIs(t, Check([]byte(deep), DefaultMaxDepth), ErrTooDeep)
	open := strings.Repeat(`{"a":`, 1<<18)
	require.ErrorIs(t, Check([]byte(open), DefaultMaxDepth), ErrTooDeep)
	require.ErrorIs(t, Check([]byte(open), 1<<20), ErrInvalid)
}

func TestCheckDepthCountsContainers(t *testing.T) {
	for d := 0; d < 40; d++ {
		b := []byte(strings.Repeat(`[{"k":`, d) + "1" + strings.Repeat("}]", d))
		require.NoError(t, Check(b, 2*d))
		if d > 0 {
			require.ErrorIs(t, Check(b, 2*d-1), ErrTooDeep)
		}
	}
}

// FuzzCheck compares with encoding/json, the strict RFC 8259 reference:
// they agree except where Python's extra literals appear.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{}`, `[1,"a",{"b":null}]`, `NaN`, `-Infinity`, `"\ud800"`, `{"a":1,}`, `[[[[`, `1e5`, `"\u00"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Check(b, 10000)
		ref := json.Valid(b)
		if err == nil && !ref {
			s := string(b)
			if !strings.Contains(s, "NaN") && !strings.Contains(s, "Infinity") {
				t.Fatalf("Check accepts %q, encoding/json does not", b)
			}
		}
		if err != nil && ref && !errors.Is(err, ErrTooDeep) {
			t.Fatalf("Check refuses %q (%v), encoding/json accepts it", b, err)
		}
	})
}

func BenchmarkCheck16KiBChat(b *testing.B) {
	turn := `{"role":"user","content":"My order #12345 arrived with a damaged box; the blender inside seems fine."},`
	body := []byte(`{"model":"m","messages":[` + strings.Repeat(turn, (16<<10)/len(turn)) + `{"role":"user","content":"?"}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(body, DefaultMaxDepth); err != nil {
			b.Fatal(err)
		}
	}
}

// A hostile body costs what its length costs: it stops at the limit.
func BenchmarkCheck520KiBOpenBrackets(b *testing.B) {
	body := []byte(strings.Repeat("[", 520<<10))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(body, DefaultMaxDepth); !errors.Is(err, ErrTooDeep) {
			b.Fatal(err)
		}
	}
}

func TestPlainWord(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(w[i])
			}
			require.Equal(t, plain[c], plainWord(x), "byte %#x at %d", c, pos)
		}
	}
}
