package main

// Streams framed with bare CRs, or with CR, LF and CRLF mixed: all legal SSE
// line endings (WHATWG HTML, "Parsing an event stream": end-of-line =
// ( cr lf / cr / lf )). The filter must count them, and strip the usage chunk
// it caused, exactly as for an LF-framed stream.

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// crStream rewrites the LF-framed fixture's line endings event by event with
// the (line end, blank line) pairs in turn, and returns the stream and the
// stream without its usage-only chunk (the one before [DONE]). No pair puts
// an LF right after a line-ending CR, which would make one CRLF of two.
func crStream(t *testing.T, endings [][2]string) (stream, withoutUsage []byte) {
	t.Helper()
	var events [][]byte
	for k, ev := range bytes.SplitAfter(fixture(t, "chat_stream_usage.sse"), []byte("\n\n")) {
		if len(ev) == 0 {
			continue
		}
		e := endings[k%len(endings)]
		body := bytes.ReplaceAll(bytes.TrimSuffix(ev, []byte("\n\n")), []byte("\n"), []byte(e[0]))
		events = append(events, append(append(body, e[0]...), e[1]...))
	}
	usageAt := len(events) - 2
	require.Contains(t, string(events[usageAt]), `"choices":[],"usage"`)
	require.Equal(t, "data: [DONE]", string(bytes.TrimRight(events[usageAt+1], "\r\n")))
	stream = bytes.Join(events, nil)
	withoutUsage = bytes.Join(append(append([][]byte{}, events[:usageAt]...), events[usageAt+1:]...), nil)
	return stream, withoutUsage
}

var crFramings = []struct {
	name    string
	endings [][2]string
}{
	{"CR", [][2]string{{"\r", "\r"}}},
	{"mixed CR CRLF LF", [][2]string{{"\r", "\r"}, {"\r\n", "\r\n"}, {"\n", "\r"}, {"\r", "\r\n"}, {"\r\n", "\r"}, {"\n", "\r\n"}, {"\r\n", "\n"}, {"\n", "\n"}}},
}

// The filter injected include_usage (the client did not ask): the client
// gets exactly the CR-framed stream minus the usage-only chunk, at every
// split, and the tokens are counted every time.
func TestStreamCRFramedUsageInjectedAndStrippedEverySplit(t *testing.T) {
	for _, fr := range crFramings {
		t.Run(fr.name, func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				host := startHost(t, vm, "")
				req := fixture(t, "chat_stream_request.json")
				upstream, want := crStream(t, fr.endings)
				if fr.name == "CR" {
					require.NotContains(t, string(upstream), "\n", "bare CRs only")
				}
				n := 0
				for i := 0; i <= len(upstream); i++ {
					r := run(t, host, exchange{
						reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{req},
						respHeaders: append(sseResponse(), [2]string{"content-length", fmt.Sprint(len(upstream))}),
						respChunks:  [][]byte{upstream[:i], upstream[i:]},
					})
					n++
					require.True(t, gjson.GetBytes(r.upstreamBody, "stream_options.include_usage").Bool(), "include_usage injected")
					_, hasLen := header(r.clientHeaders, "content-length")
					require.False(t, hasLen, "the response's content-length is dropped, the body changed size")
					require.Equal(t, string(want), string(r.clientBody), "split at %d", i)
				}
				require.Equal(t, uint64(131*n), counter(t, host, promptTokens("tweet-summary", "tweet-summary-1")))
				require.Equal(t, uint64(13*n), counter(t, host, completionTokens("tweet-summary", "tweet-summary-1")))
				require.Equal(t, "sse", property(t, host, "llm_usage_source"))
			})
		})
	}
}

// Byte by byte, every CR of the stream ends a chunk and every LF starts
// one: a CR|LF split is one line ending, never a blank line.
func TestStreamCRFramedBytewise(t *testing.T) {
	for _, fr := range crFramings {
		t.Run(fr.name, func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				host := startHost(t, vm, "")
				upstream, want := crStream(t, fr.endings)
				var chunks [][]byte
				for i := range upstream {
					chunks = append(chunks, upstream[i:i+1])
				}
				r := run(t, host, exchange{
					reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{fixture(t, "chat_stream_request.json")},
					respHeaders: sseResponse(), respChunks: chunks,
				})
				require.Equal(t, string(want), string(r.clientBody))
				require.Equal(t, uint64(13), counter(t, host, completionTokens("tweet-summary", "tweet-summary-1")))
			})
		})
	}
}

// The client asked for usage itself: the CR-framed stream is observed and
// counted, never changed.
func TestStreamCRFramedClientUsage(t *testing.T) {
	for _, fr := range crFramings {
		t.Run(fr.name, func(t *testing.T) {
			bothVMs(t, func(t *testing.T, vm types.VMContext) {
				host := startHost(t, vm, "")
				req := fixture(t, "chat_stream_usage_request.json")
				stream, _ := crStream(t, fr.endings)
				n := 0
				for i := 0; i <= len(stream); i += 7 {
					r := run(t, host, exchange{
						reqHeaders: llmRequest("/v1/chat/completions"), reqChunks: [][]byte{req},
						respHeaders: sseResponse(), respChunks: [][]byte{stream[:i], stream[i:]},
					})
					n++
					require.Equal(t, req, r.upstreamBody, "nothing injected")
					require.Equal(t, string(stream), string(r.clientBody), "split at %d", i)
				}
				require.Equal(t, uint64(131*n), counter(t, host, promptTokens("tweet-summary", "tweet-summary-1")))
				require.Equal(t, uint64(13*n), counter(t, host, completionTokens("tweet-summary", "tweet-summary-1")))
				require.Equal(t, "true", property(t, host, "llm_stream"))
			})
		})
	}
}
