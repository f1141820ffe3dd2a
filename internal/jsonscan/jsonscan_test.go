package jsonscan

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
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

func members(t *testing.T, in string) (got [][2]string, err error) {
	t.Helper()
	err = Members([]byte(in), 8, func(k, v []byte) { got = append(got, [2]string{string(k), string(v)}) })
	return got, err
}

func TestMembers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want [][2]string
	}{
		{`{}`, nil},
		{` { "a" : 1 , "b":[1,{"c":2}],"d" :{} ,"e":[], "f":"x\"y", "g":null } `, [][2]string{
			{`"a"`, `1`}, {`"b"`, `[1,{"c":2}]`}, {`"d"`, `{}`}, {`"e"`, `[]`}, {`"f"`, `"x\"y"`}, {`"g"`, `null`}}},
		{`{"u\u0073age":{"prompt_tokens":3},"usage":null}`, [][2]string{{`"u\u0073age"`, `{"prompt_tokens":3}`}, {`"usage"`, `null`}}},
		{`{"a":{"b":{"c":[[]]}}}`, [][2]string{{`"a"`, `{"b":{"c":[[]]}}`}}},
		{`[{"a":1}]`, nil}, // not an object: no members
		{`"s"`, nil},
	} {
		got, err := members(t, tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	// The error is Check's; what member saw before it is to be discarded.
	_, err := members(t, `{"a":1,"b":}`)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = members(t, `{"a":[[[[[[[[[]]]]]]]]]}`)
	require.ErrorIs(t, err, ErrTooDeep)
}

// FuzzMembers: Members fails exactly when Check does, and on a valid object
// sees the members gjson's ForEach walks, byte for byte.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":[{"c":null}],"d":"\u00e9"}`, ` {"a" : { } } `, `[1]`, `{"a":1,}`, `{"a"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got [][2]string
		err := Members(b, 64, func(k, v []byte) { got = append(got, [2]string{string(k), string(v)}) })
		if ref := Check(b, 64); (err == nil) != (ref == nil) {
			t.Fatalf("Members %v, Check %v on %q", err, ref, b)
		}
		root := gjson.ParseBytes(b)
		if err != nil || !root.IsObject() {
			return
		}
		var want [][2]string
		root.ForEach(func(k, v gjson.Result) bool {
			want = append(want, [2]string{k.Raw, v.Raw})
			return true
		})
		if len(got) != len(want) {
			t.Fatalf("%q: members %q, gjson %q", b, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%q: member %d is %q, gjson %q", b, i, got[i], want[i])
			}
		}
	})
}
