package sse

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func events(f *Framer, chunks ...string) []string {
	var got []string
	fn := func(ev []byte) bool { got = append(got, string(ev)); return true }
	for _, c := range chunks {
		f.Observe([]byte(c), fn)
	}
	f.Flush(nil, false, fn)
	return got
}

func TestFraming(t *testing.T) {
	stream := "data: a\n\ndata: b\r\n\r\nevent: x\ndata: c\n\n"
	want := []string{"data: a\n\n", "data: b\r\n\r\n", "event: x\ndata: c\n\n"}
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			require.Equal(t, want, events(New(1024), stream[:i], stream[i:j], stream[j:]), "cuts %d %d", i, j)
		}
	}
	// An unterminated tail is offered at Flush.
	require.Equal(t, []string{"data: a\n\n", "data: b"}, events(New(1024), "data: a\n\ndata: b"))
}

func TestRewriteDropsWholeEvents(t *testing.T) {
	stream := "data: keep1\n\ndata: drop\n\ndata: keep2\n\n"
	for i := 0; i <= len(stream); i++ {
		f := New(1024)
		fn := func(ev []byte) bool { return !bytes.Contains(ev, []byte("drop")) }
		var out []byte
		out = f.Rewrite(out, []byte(stream[:i]), fn)
		out = f.Rewrite(out, []byte(stream[i:]), fn)
		out = f.Flush(out, true, fn)
		require.Equal(t, "data: keep1\n\ndata: keep2\n\n", string(out), "cut %d", i)
		require.Zero(t, f.Pending())
	}
}

func TestOversizedEventPassesThrough(t *testing.T) {
	big := "data: " + string(bytes.Repeat([]byte("x"), 300)) + "\n\n"
	stream := big + "data: small\n\n"
	f := New(100)
	var seen []string
	fn := func(ev []byte) bool { seen = append(seen, string(ev)); return true }
	var out []byte
	for i := 0; i < len(stream); i += 50 {
		end := min(i+50, len(stream))
		out = f.Rewrite(out, []byte(stream[i:end]), fn)
		require.LessOrEqual(t, f.Pending(), 100+50, "the held tail stays bounded")
	}
	out = f.Flush(out, true, fn)
	require.Equal(t, stream, string(out), "nothing is lost")
	require.Equal(t, []string{"data: small\n\n"}, seen, "the oversized event is not observed")
	require.Equal(t, 1, f.Oversized)
}

func TestData(t *testing.T) {
	require.Equal(t, `{"a":1}`, string(Data([]byte("data: {\"a\":1}\n\n"))))
	require.Equal(t, `x`, string(Data([]byte("data:x\r\n\r\n"))))
	require.Equal(t, "l1\nl2", string(Data([]byte("event: e\ndata: l1\ndata: l2\n\n"))))
	require.Equal(t, "[DONE]", string(Data([]byte(": comment\ndata: [DONE]\n\n"))))
	require.Nil(t, Data([]byte("event: ping\n\n")))
}

func FuzzFramer(f *testing.F) {
	f.Add([]byte("data: a\n\ndata: b\r\n\r\n"), uint8(3), uint8(9))
	f.Add([]byte("data: {\"x\":1}\n\ndata: [DONE]\n\n"), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, a, b uint8) {
		i, j := int(a)%(len(stream)+1), int(b)%(len(stream)+1)
		if i > j {
			i, j = j, i
		}
		// Keeping every event reproduces the stream exactly, however it is cut.
		fr := New(64)
		keep := func([]byte) bool { return true }
		var out []byte
		out = fr.Rewrite(out, stream[:i], keep)
		out = fr.Rewrite(out, stream[i:j], keep)
		out = fr.Rewrite(out, stream[j:], keep)
		out = fr.Flush(out, true, keep)
		if !bytes.Equal(out, stream) {
			t.Fatalf("rewrite with keep-all changed the stream")
		}
		if fr.Pending() != 0 {
			t.Fatal("bytes held after Flush")
		}
		for _, ev := range events(New(64), string(stream[:i]), string(stream[i:])) {
			_ = Data([]byte(ev))
		}
	})
}
