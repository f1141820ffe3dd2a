package sse

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// refEvents is the reference framer: the whole stream at once, byte by byte,
// as the WHATWG grammar reads (lines end with CRLF, LF or CR; an empty line
// ends an event). It returns the complete events and the unterminated tail.
func refEvents(s []byte) (events [][]byte, tail []byte) {
	start, emptyLine := 0, true
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\r' && c != '\n' {
			emptyLine = false
			i++
			continue
		}
		i++
		if c == '\r' && i < len(s) && s[i] == '\n' {
			i++
		}
		if emptyLine {
			events, start = append(events, s[start:i]), i
		}
		emptyLine = true
	}
	return events, s[start:]
}

// sameEvent reports whether the framer's event got equals the reference
// event want: the same bytes, or want's bytes but for the LF of a final
// CRLF, which the framer passes on after the event when a cut falls
// between the CR and the LF.
func sameEvent(got, want []byte) bool {
	return bytes.Equal(got, want) ||
		bytes.HasSuffix(want, []byte("\r\n")) && bytes.Equal(got, want[:len(want)-1])
}

// cut feeds stream in pieces ending at the given offsets, and returns the
// events fn saw (Flush included), the bytes Rewrite forwarded and the framer.
func cut(maxEvent int, stream []byte, keep func([]byte) bool, offsets ...int) (seen [][]byte, out []byte, f *Framer) {
	f = New(maxEvent)
	fn := func(ev []byte) bool {
		seen = append(seen, bytes.Clone(ev))
		return keep(ev)
	}
	prev := 0
	for _, o := range append(offsets, len(stream)) {
		out = f.Rewrite(out, stream[prev:o], fn)
		prev = o
	}
	out = f.Flush(out, true, fn)
	return seen, out, f
}

func keepAll([]byte) bool { return true }

// dropMarked drops events whose data says "drop"; it looks at the data
// only, so a split CRLF (see sameEvent) cannot change its answer.
func dropMarked(ev []byte) bool { return !bytes.Contains(Data(ev), []byte("drop")) }

// Streams with every line ending the spec allows, and their events.
var lineEndingCases = []struct {
	name   string
	stream string
	events []string // complete events then the tail, as the reference frames them
	data   []string // Data of each
}{
	{"LF", "data: a\n\ndata: b\n\n", []string{"data: a\n\n", "data: b\n\n"}, []string{"a", "b"}},
	{"CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", []string{"data: a\r\n\r\n", "data: b\r\n\r\n"}, []string{"a", "b"}},
	{"CR", "data: a\r\rdata: b\r\r", []string{"data: a\r\r", "data: b\r\r"}, []string{"a", "b"}},
	{"CR multi-line event", "event: x\rdata: l1\rdata: l2\r\r", []string{"event: x\rdata: l1\rdata: l2\r\r"}, []string{"l1\nl2"}},
	{"mixed in one event", "data: l1\rdata: l2\r\ndata: l3\n\r\n", []string{"data: l1\rdata: l2\r\ndata: l3\n\r\n"}, []string{"l1\nl2\nl3"}},
	{"LF then CR ends an event", "data: a\n\rdata: b\r\n\n", []string{"data: a\n\r", "data: b\r\n\n"}, []string{"a", "b"}},
	{"CR then LF is one line ending, not a blank line", "data: a\r\ndata: b\r\r", []string{"data: a\r\ndata: b\r\r"}, []string{"a\nb"}},
	{"CR CR LF: blank line ended by CRLF", "data: a\r\r\ndata: b\n\n", []string{"data: a\r\r\n", "data: b\n\n"}, []string{"a", "b"}},
	{"LF CR CR: a lone empty event between", "data: a\n\r\rdata: b\n\n", []string{"data: a\n\r", "\r", "data: b\n\n"}, []string{"a", "", "b"}},
	{"comment and [DONE] with CR", ": ping\r\rdata: [DONE]\r\r", []string{": ping\r\r", "data: [DONE]\r\r"}, []string{"", "[DONE]"}},
	{"unterminated tail", "data: a\r\rdata: b\r", []string{"data: a\r\r", "data: b\r"}, []string{"a", "b"}},
}

func TestLineEndings(t *testing.T) {
	for _, tc := range lineEndingCases {
		t.Run(tc.name, func(t *testing.T) {
			stream := []byte(tc.stream)
			refEvs, refTail := refEvents(stream)
			all := refEvs
			if len(refTail) > 0 {
				all = append(all, refTail)
			}
			var want []string
			for _, ev := range all {
				want = append(want, string(ev))
			}
			require.Equal(t, tc.events, want, "the reference framer")

			seen, out, f := cut(1024, stream, keepAll)
			require.Equal(t, tc.events, strs(seen), "whole stream")
			require.Equal(t, tc.stream, string(out))
			require.Zero(t, f.Pending())
			var data []string
			for _, ev := range seen {
				data = append(data, string(Data(ev)))
			}
			require.Equal(t, tc.data, data)
		})
	}
}

func strs(bs [][]byte) []string {
	var s []string
	for _, b := range bs {
		s = append(s, string(b))
	}
	return s
}

// TestLineEndingsEverySplit cuts every case at every pair of offsets: the
// events, their data and the forwarded bytes never depend on the cuts.
func TestLineEndingsEverySplit(t *testing.T) {
	for _, tc := range lineEndingCases {
		stream := []byte(tc.stream)
		for i := 0; i <= len(stream); i++ {
			for j := i; j <= len(stream); j++ {
				seen, out, f := cut(1024, stream, keepAll, i, j)
				require.Equal(t, tc.stream, string(out), "%s: cuts %d %d", tc.name, i, j)
				require.Len(t, seen, len(tc.events), "%s: cuts %d %d: %q", tc.name, i, j, strs(seen))
				for k := range seen {
					require.True(t, sameEvent(seen[k], []byte(tc.events[k])), "%s: cuts %d %d: event %d %q", tc.name, i, j, k, seen[k])
					require.Equal(t, tc.data[k], string(Data(seen[k])))
				}
				require.Zero(t, f.Pending())
			}
		}
	}
}

// A CR that ends an event at the end of a chunk, followed by the LF of its
// CRLF at the start of the next: one line ending, and the LF goes with its
// event (dropped with it, forwarded with it).
func TestSplitCRLFFollowsItsEvent(t *testing.T) {
	stream := "data: drop\r\n\r\ndata: keep\r\n\r\ndata: drop2\r\n\r\ndata: [DONE]\r\n\r\n"
	want := "data: keep\r\n\r\ndata: [DONE]\r\n\r\n"
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			seen, out, _ := cut(1024, []byte(stream), dropMarked, i, j)
			require.Equal(t, want, string(out), "cuts %d %d", i, j)
			require.Len(t, seen, 4, "cuts %d %d: no empty event from a split CRLF", i, j)
		}
	}
	// The CR is the last byte of a chunk that ends the event; the LF comes
	// alone in the next chunk, then an empty chunk, then the rest.
	f := New(1024)
	var out []byte
	out = f.Rewrite(out, []byte("data: drop\r\n\r"), dropMarked)
	require.Empty(t, out, "the event is decided at the CR, not held back")
	require.Zero(t, f.Pending())
	out = f.Rewrite(out, nil, dropMarked)
	out = f.Rewrite(out, []byte("\n"), dropMarked)
	out = f.Rewrite(out, []byte("data: keep\r\r"), dropMarked)
	require.Equal(t, "data: keep\r\r", string(out), "forwarded at once, without waiting for the next chunk")
	out = f.Rewrite(out, []byte("\n"), dropMarked)
	require.Equal(t, "data: keep\r\r\n", string(out))
}

func TestFraming(t *testing.T) {
	stream := "data: a\n\ndata: b\r\n\r\nevent: x\ndata: c\n\ndata: d\r\r"
	want := []string{"data: a\n\n", "data: b\r\n\r\n", "event: x\ndata: c\n\n", "data: d\r\r"}
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			seen, _, _ := cut(1024, []byte(stream), keepAll, i, j)
			require.Len(t, seen, len(want), "cuts %d %d", i, j)
			for k := range want {
				require.True(t, sameEvent(seen[k], []byte(want[k])), "cuts %d %d: %q", i, j, seen[k])
			}
		}
	}
	// An unterminated tail is offered at Flush.
	seen, _, _ := cut(1024, []byte("data: a\n\ndata: b"), keepAll)
	require.Equal(t, []string{"data: a\n\n", "data: b"}, strs(seen))
}

func TestRewriteDropsWholeEvents(t *testing.T) {
	for _, eol := range []string{"\n", "\r\n", "\r"} {
		stream := strings.ReplaceAll("data: keep1\n\ndata: drop\n\ndata: keep2\n\n", "\n", eol)
		want := strings.ReplaceAll("data: keep1\n\ndata: keep2\n\n", "\n", eol)
		for i := 0; i <= len(stream); i++ {
			_, out, f := cut(1024, []byte(stream), dropMarked, i)
			require.Equal(t, want, string(out), "%q: cut %d", eol, i)
			require.Zero(t, f.Pending())
		}
	}
}

func TestOversizedEventPassesThrough(t *testing.T) {
	for _, eol := range []string{"\n", "\r\n", "\r"} {
		big := "data: " + strings.Repeat("x", 300) + eol + eol
		stream := big + "data: small" + eol + eol
		f := New(100)
		var seen []string
		fn := func(ev []byte) bool { seen = append(seen, string(ev)); return true }
		var out []byte
		for i := 0; i < len(stream); i += 50 {
			end := min(i+50, len(stream))
			out = f.Rewrite(out, []byte(stream[i:end]), fn)
			require.LessOrEqual(t, f.Pending(), 100, "the held tail stays bounded")
		}
		out = f.Flush(out, true, fn)
		require.Equal(t, stream, string(out), "nothing is lost")
		require.Equal(t, []string{"data: small" + eol + eol}, seen, "the oversized event is not observed")
		require.Equal(t, 1, f.Oversized)
	}
}

// The end of an oversized event is found even when its blank line is split
// between chunks: the event after it is observed.
func TestOversizedEndSplitAcrossChunks(t *testing.T) {
	big := "data: " + strings.Repeat("x", 300)
	for _, tc := range []struct{ a, b string }{{"\n", "\n"}, {"\r", "\r"}, {"\r\n", "\r\n"}, {"\r\n\r", "\n"}, {"\r", "\n\r\n"}} {
		f := New(100)
		var seen []string
		fn := func(ev []byte) bool { seen = append(seen, string(ev)); return true }
		var out []byte
		out = f.Rewrite(out, []byte(big[:150]), fn) // over the limit: skipping
		out = f.Rewrite(out, []byte(big[150:]+tc.a), fn)
		out = f.Rewrite(out, []byte(tc.b+"data: small\n\n"), fn)
		out = f.Flush(out, true, fn)
		require.Equal(t, big+tc.a+tc.b+"data: small\n\n", string(out))
		require.Equal(t, []string{"data: small\n\n"}, seen, "%q|%q", tc.a, tc.b)
		require.Equal(t, 1, f.Oversized)
	}
}

func TestData(t *testing.T) {
	require.Equal(t, `{"a":1}`, string(Data([]byte("data: {\"a\":1}\n\n"))))
	require.Equal(t, `x`, string(Data([]byte("data:x\r\n\r\n"))))
	require.Equal(t, `x`, string(Data([]byte("data:x\r\r"))))
	require.Equal(t, "l1\nl2", string(Data([]byte("event: e\ndata: l1\ndata: l2\n\n"))))
	require.Equal(t, "l1\nl2\nl3", string(Data([]byte("data: l1\rdata: l2\r\ndata: l3\n\r"))))
	require.Equal(t, "[DONE]", string(Data([]byte(": comment\ndata: [DONE]\n\n"))))
	require.Equal(t, "[DONE]", string(Data([]byte(": comment\rdata: [DONE]\r\r"))))
	require.Nil(t, Data([]byte("event: ping\n\n")))
}

// A CR-only stream of many short lines, in one chunk: linear, not a search
// for an LF to the chunk's end at every line.
func BenchmarkFramerCRStream(b *testing.B) { benchFramer(b, "\r\r") }

func BenchmarkFramerLFStream(b *testing.B) { benchFramer(b, "\n\n") }

func benchFramer(b *testing.B, end string) {
	stream := []byte(strings.Repeat("data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}}]}"+end, 2000))
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		f := New(64 << 10)
		n := 0
		f.Observe(stream, func([]byte) bool { n++; return true })
		if n != 2000 {
			b.Fatal(n)
		}
	}
}

func FuzzFramer(f *testing.F) {
	f.Add([]byte("data: a\n\ndata: b\r\n\r\n"), uint8(3), uint8(9))
	f.Add([]byte("data: {\"x\":1}\n\ndata: [DONE]\n\n"), uint8(1), uint8(1))
	f.Add([]byte("data: a\r\rdata: drop\r\n\r\ndata: b\r\n\n\r"), uint8(9), uint8(24))
	f.Add([]byte("data: "+strings.Repeat("y", 80)+"\r\r\ndata: drop\r\r"), uint8(86), uint8(87))
	f.Fuzz(func(t *testing.T, stream []byte, a, b uint8) {
		i, j := int(a)%(len(stream)+1), int(b)%(len(stream)+1)
		if i > j {
			i, j = j, i
		}
		refEvs, refTail := refEvents(stream)
		all := refEvs
		if len(refTail) > 0 {
			all = append(all, refTail)
		}
		// Differential against the reference, with a limit the stream fits
		// in (every event observed) and with a small one (oversized events
		// are passed on unobserved).
		for _, maxEvent := range []int{len(stream), 64} {
			seen, out, fr := cut(maxEvent, stream, dropMarked, i, j)
			if fr.Pending() != 0 {
				t.Fatal("bytes held after Flush")
			}
			var want []byte
			skipped, k := 0, 0
			for _, ev := range all {
				if k < len(seen) && sameEvent(seen[k], ev) {
					k++
					if dropMarked(ev) {
						want = append(want, ev...)
					}
					continue
				}
				if len(ev) <= maxEvent {
					t.Fatalf("max %d cuts %d %d: event %q not observed; saw %q", maxEvent, i, j, ev, seen)
				}
				skipped++
				want = append(want, ev...) // passed on unobserved
			}
			if k != len(seen) {
				t.Fatalf("max %d cuts %d %d: extra events %q", maxEvent, i, j, seen[k:])
			}
			if skipped != fr.Oversized {
				t.Fatalf("max %d: %d events skipped, Oversized %d", maxEvent, skipped, fr.Oversized)
			}
			if !bytes.Equal(out, want) {
				t.Fatalf("max %d cuts %d %d: forwarded %q, want %q", maxEvent, i, j, out, want)
			}
			// Keeping every event reproduces the stream exactly.
			if _, out, _ := cut(maxEvent, stream, keepAll, i, j); !bytes.Equal(out, stream) {
				t.Fatalf("keep-all changed the stream")
			}
		}
	})
}
