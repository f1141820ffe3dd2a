package jsonenc

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestAppendString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"llama-3", `"llama-3"`},
		{`say "hi"`, `"say \"hi\""`},
		{`C:\dir`, `"C:\\dir"`},
		{"a/b", `"a/b"`}, // the solidus needs no escape
		{"\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"\x7f", "\"\x7f\""}, // DEL is not a control character in JSON
		{"<&>", `"<&>"`},
		{"héllo 世界 🦙", `"héllo 世界 🦙"`},
		{"\u2028\u2029", "\"\u2028\u2029\""},
		{"\uFFFD", "\"\uFFFD\""}, // a valid U+FFFD is kept as it is
		// Invalid UTF-8: each bad byte becomes \ufffd, as encoding/json does.
		{"a\xffb", `"a\ufffdb"`},
		{"\x80\x80", `"\ufffd\ufffd"`},           // stray continuation bytes
		{"\xe4\xb8", `"\ufffd\ufffd"`},           // a truncated 3-byte sequence
		{"\xc0\xaf", `"\ufffd\ufffd"`},           // an overlong '/'
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`}, // a UTF-8 encoded surrogate
		{"\xe4\xb8\x96\xff\"", `"世\ufffd\""`},
	} {
		got := string(AppendString(nil, tc.in))
		if got != tc.want {
			t.Errorf("AppendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		marshalled, _ := json.Marshal(tc.in)
		var fromOurs, fromGo string
		if err := json.Unmarshal([]byte(got), &fromOurs); err != nil {
			t.Fatalf("AppendString(%q) = %s: not JSON: %v", tc.in, got, err)
		}
		_ = json.Unmarshal(marshalled, &fromGo)
		if fromOurs != fromGo {
			t.Errorf("AppendString(%q) reads back as %q, encoding/json's as %q", tc.in, fromOurs, fromGo)
		}
	}
}

func TestAppendStringAppends(t *testing.T) {
	dst := []byte(`{"model":`)
	if got := string(AppendString(dst, "m\n")); got != `{"model":"m\n"` {
		t.Errorf("got %s", got)
	}
}

func TestAppendStringAllocationFree(t *testing.T) {
	buf := make([]byte, 0, 256)
	s := "model \"x\"\n\x01 世界 \xff"
	if n := testing.AllocsPerRun(100, func() { buf = AppendString(buf[:0], s) }); n != 0 {
		t.Errorf("AppendString into a large enough buffer allocates %v times", n)
	}
}

// FuzzAppendString: the output is always one valid JSON string in valid
// UTF-8 that encoding/json reads back as it reads back its own encoding
// (which for valid UTF-8 is the input itself).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\x00\x1f\n", "世界", "\xff\xfe", "\xed\xa0\x80", "\xe4\xb8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString([]byte("x"), s)[1:]
		if !utf8.Valid(out) {
			t.Fatalf("AppendString(%q) = %q: not UTF-8", s, out)
		}
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("AppendString(%q) = %q: %v", s, out, err)
		}
		marshalled, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var want string
		if err := json.Unmarshal(marshalled, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("AppendString(%q) reads back as %q, encoding/json's as %q", s, got, want)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("valid UTF-8 %q reads back as %q", s, got)
		}
	})
}
