package llmapi

import (
	"bytes"
	"compress/gzip"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/internal/jsonscan"
)

var testLimits = ObserverLimits{MaxBody: 1 << 20, MaxEvent: 64 << 10, DecodeGzip: true}

// feed runs body through a new observer in the given chunks and returns what
// the client would receive and the outcome.
func feed(ctype, enc string, strip bool, l ObserverLimits, chunks ...[]byte) ([]byte, Outcome) {
	o := NewResponseObserver(ctype, enc, strip, l)
	var client []byte
	for i, c := range chunks {
		out, replace := o.Chunk(c, i == len(chunks)-1)
		if replace {
			client = append(client, out...)
		} else {
			client = append(client, c...)
		}
	}
	return client, o.Finish()
}

func TestObserveJSON(t *testing.T) {
	client, oc := feed("application/json", "", false, testLimits, fixture(t, "chat_response.json"))
	require.Equal(t, fixture(t, "chat_response.json"), client)
	require.Equal(t, Usage{PromptTokens: 131, CompletionTokens: 15, HasPrompt: true, HasCompletion: true}, oc.Usage)
	require.Equal(t, SourceJSON, oc.Source)
	require.Equal(t, "tweet-summary-1", oc.Model)

	_, oc = feed("application/json", "", false, testLimits, fixture(t, "chat_response_no_usage.json"))
	require.False(t, oc.Usage.Reported())
	require.Equal(t, MissingNotReported, oc.Missing)

	_, oc = feed("application/json", "", false, testLimits, fixture(t, "embeddings_response.json"))
	require.Equal(t, Usage{PromptTokens: 12, HasPrompt: true}, oc.Usage, "embeddings report no completion tokens: not zero, absent")

	_, oc = feed("application/json", "", false, testLimits, []byte(`{"usage":{"input_tokens":3,"output_tokens":4},"model":"m"}`))
	require.Equal(t, Usage{PromptTokens: 3, CompletionTokens: 4, HasPrompt: true, HasCompletion: true}, oc.Usage)
}

func TestObserveErrors(t *testing.T) {
	for _, tc := range []struct{ file, typ string }{{"error_new.json", "NotFoundError"}, {"error_old.json", "BadRequestError"}} {
		_, oc := feed("application/json", "", false, testLimits, fixture(t, tc.file))
		require.True(t, oc.IsError, tc.file)
		require.Equal(t, tc.typ, oc.ErrorType)
	}
	_, oc := feed("text/event-stream", "", false, testLimits, fixture(t, "chat_stream_error.sse"))
	require.True(t, oc.IsError)
	require.Equal(t, "InternalServerError", oc.ErrorType)
	require.True(t, oc.Done)
}

func TestObserveJSONLimitsAndEncodings(t *testing.T) {
	body := fixture(t, "chat_response.json")
	_, oc := feed("application/json", "", false, ObserverLimits{MaxBody: 100, MaxEvent: 1024}, body[:60], body[60:])
	require.Equal(t, MissingOversize, oc.Missing)
	require.False(t, oc.Usage.Reported())

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(body)
	require.NoError(t, zw.Close())
	_, oc = feed("application/json", "gzip", false, testLimits, gz.Bytes()[:10], gz.Bytes()[10:])
	require.Equal(t, int64(15), oc.Usage.CompletionTokens, "gzip JSON is decoded")

	require.Less(t, gz.Len(), 400)
	_, oc = feed("application/json", "gzip", false, ObserverLimits{MaxBody: 400, MaxEvent: 1024, DecodeGzip: true}, gz.Bytes())
	require.Equal(t, MissingOversize, oc.Missing, "a gzip body that inflates past the cap is not read")

	_, oc = feed("application/json", "gzip", false, testLimits, []byte("not gzip"))
	require.Equal(t, MissingUnparsable, oc.Missing)

	_, oc = feed("application/json", "br", false, testLimits, []byte{1, 2, 3})
	require.Equal(t, MissingEncoded, oc.Missing)

	noGzip := testLimits
	noGzip.DecodeGzip = false
	_, oc = feed("application/json", "gzip", false, noGzip, gz.Bytes())
	require.Equal(t, MissingEncoded, oc.Missing)

	client, oc := feed("text/event-stream", "gzip", true, testLimits, gz.Bytes())
	require.Equal(t, gz.Bytes(), client, "an encoded stream is never rewritten")
	require.Equal(t, MissingEncoded, oc.Missing)

	_, oc = feed("application/json", "", false, testLimits)
	require.Equal(t, MissingNoBody, oc.Missing)
	_, oc = feed("application/json", "", false, testLimits, []byte(`{"usage":`))
	require.Equal(t, MissingUnparsable, oc.Missing)
}

// TestStreamEverySplit cuts real streams at every byte offset (and into
// three pieces at many offsets) and checks that usage, model and the bytes
// the client receives never depend on where the cuts fall.
func TestStreamEverySplit(t *testing.T) {
	withUsage := fixture(t, "chat_stream_usage.sse")
	withoutUsage := fixture(t, "chat_stream_no_usage.sse")
	completions := fixture(t, "completions_stream_usage.sse")
	want := Usage{PromptTokens: 131, CompletionTokens: 13, HasPrompt: true, HasCompletion: true}

	check := func(t *testing.T, stream []byte, strip bool, wantClient []byte, wantUsage Usage, chunks ...[]byte) {
		client, oc := feed("text/event-stream", "", strip, testLimits, chunks...)
		require.Equal(t, string(wantClient), string(client))
		require.Equal(t, wantUsage, oc.Usage)
		require.True(t, oc.Done)
		require.Equal(t, SourceSSE, oc.Source)
		require.Zero(t, oc.BadEvents)
	}
	for i := 0; i <= len(withUsage); i++ {
		a, b := withUsage[:i], withUsage[i:]
		check(t, withUsage, false, withUsage, want, a, b)
		// The filter injected include_usage: the client gets the stream it
		// asked for, without the usage-only chunk.
		check(t, withUsage, true, withoutUsage, want, a, b)
	}
	cu := Usage{PromptTokens: 9, CompletionTokens: 8, HasPrompt: true, HasCompletion: true}
	for i := 0; i <= len(completions); i++ {
		check(t, completions, false, completions, cu, completions[:i], completions[i:])
	}
	for i := 0; i < len(withUsage); i += 7 {
		for j := i; j <= len(withUsage); j += 13 {
			check(t, withUsage, true, withoutUsage, want, withUsage[:i], withUsage[i:j], withUsage[j:])
		}
	}
	// Byte by byte.
	var bytewise [][]byte
	for i := range withUsage {
		bytewise = append(bytewise, withUsage[i:i+1])
	}
	check(t, withUsage, true, withoutUsage, want, bytewise...)

	// No usage in the stream: nothing counted, and the reason is given.
	client, oc := feed("text/event-stream", "", false, testLimits, withoutUsage[:100], withoutUsage[100:])
	require.Equal(t, withoutUsage, client)
	require.Equal(t, MissingNotReported, oc.Missing)
	require.False(t, oc.Usage.Reported())
}

// reframe rewrites an LF-framed stream's line endings, event by event, with
// the (line end, blank line) pairs of endings, in turn. A pair never puts an
// LF right after a line-ending CR: that would make one CRLF of two endings.
func reframe(stream []byte, endings [][2]string) (events [][]byte) {
	for k, ev := range bytes.SplitAfter(stream, []byte("\n\n")) {
		if len(ev) == 0 {
			continue
		}
		e := endings[k%len(endings)]
		body := bytes.TrimSuffix(ev, []byte("\n\n"))
		out := bytes.ReplaceAll(body, []byte("\n"), []byte(e[0]))
		events = append(events, append(append(out, e[0]...), e[1]...))
	}
	return events
}

var (
	crEndings    = [][2]string{{"\r", "\r"}}
	mixedEndings = [][2]string{{"\r", "\r"}, {"\r\n", "\r\n"}, {"\n", "\n"}, {"\r", "\r\n"}, {"\n", "\r"}, {"\r\n", "\n"}, {"\r\n", "\r"}, {"\n", "\r\n"}}
)

// TestStreamCRLineEndingsEverySplit: a stream framed with bare CRs, or with
// CR, LF and CRLF mixed, is counted like an LF one, and stripping removes
// exactly the usage-only chunk, wherever the chunks are cut.
func TestStreamCRLineEndingsEverySplit(t *testing.T) {
	want := Usage{PromptTokens: 131, CompletionTokens: 13, HasPrompt: true, HasCompletion: true}
	for name, endings := range map[string][][2]string{"CR": crEndings, "mixed": mixedEndings} {
		events := reframe(fixture(t, "chat_stream_usage.sse"), endings)
		usageAt := len(events) - 2 // the usage-only chunk, before [DONE]
		require.Contains(t, string(events[usageAt]), `"choices":[],"usage"`)
		stream := bytes.Join(events, nil)
		stripped := bytes.Join(append(append([][]byte{}, events[:usageAt]...), events[usageAt+1:]...), nil)
		for i := 0; i <= len(stream); i++ {
			for _, strip := range []bool{false, true} {
				client, oc := feed("text/event-stream", "", strip, testLimits, stream[:i], stream[i:])
				wantClient := stream
				if strip {
					wantClient = stripped
				}
				require.Equal(t, string(wantClient), string(client), "%s strip %v cut %d", name, strip, i)
				require.Equal(t, want, oc.Usage, "%s cut %d", name, i)
				require.True(t, oc.Done)
				require.Zero(t, oc.BadEvents)
				require.Equal(t, len(events)-1, oc.Events, "every JSON chunk counted")
			}
		}
	}
}

func TestStreamTruncatedAndOversized(t *testing.T) {
	s := fixture(t, "chat_stream_usage.sse")
	cut := bytes.Index(s, []byte(`"choices":[],"usage"`))
	// The stream breaks off inside the usage chunk: no usage, no [DONE].
	client, oc := feed("text/event-stream", "", true, testLimits, s[:cut])
	require.Equal(t, s[:cut], client, "a truncated tail is forwarded at the end, not lost")
	require.False(t, oc.Done)
	require.Equal(t, MissingNotReported, oc.Missing)

	// An event larger than MaxEvent passes through unobserved.
	big := append([]byte("data: {\"x\":\""), bytes.Repeat([]byte("a"), 5000)...)
	big = append(big, "\"}\n\n"...)
	stream := append(append([]byte{}, big...), s...)
	l := ObserverLimits{MaxBody: 1 << 20, MaxEvent: 1024}
	client, oc = feed("text/event-stream", "", true, l, stream[:2000], stream[2000:4000], stream[4000:])
	require.Equal(t, string(append(big, fixture(t, "chat_stream_no_usage.sse")...)), string(client))
	require.Equal(t, 1, oc.Oversized)
	require.Equal(t, int64(13), oc.Usage.CompletionTokens)
}

func FuzzObserveStream(f *testing.F) {
	f.Add(fixture(f, "chat_stream_usage.sse"), uint16(10), uint16(500))
	f.Add(fixture(f, "completions_stream_usage.sse"), uint16(1), uint16(2))
	f.Add(fixture(f, "chat_stream_error.sse"), uint16(0), uint16(0))
	f.Add(bytes.Join(reframe(fixture(f, "chat_stream_usage.sse"), mixedEndings), nil), uint16(200), uint16(2900))
	f.Fuzz(func(t *testing.T, stream []byte, c1, c2 uint16) {
		i, j := int(c1)%(len(stream)+1), int(c2)%(len(stream)+1)
		if i > j {
			i, j = j, i
		}
		l := ObserverLimits{MaxBody: 1 << 16, MaxEvent: 512}
		whole, oc1 := feed("text/event-stream", "", false, l, stream)
		split, oc2 := feed("text/event-stream", "", false, l, stream[:i], stream[i:j], stream[j:])
		if !bytes.Equal(whole, stream) || !bytes.Equal(split, stream) {
			t.Fatal("observe-only mode changed the stream")
		}
		if oc1.Usage != oc2.Usage || oc1.Done != oc2.Done {
			t.Fatalf("split changed the outcome: %+v vs %+v", oc1, oc2)
		}
		// Stripping only ever removes whole events.
		stripped, _ := feed("text/event-stream", "", true, l, stream[:i], stream[i:j], stream[j:])
		if len(stripped) > len(stream) {
			t.Fatal("stripping grew the stream")
		}
		if oc1.Usage.PromptTokens < 0 || oc1.Usage.CompletionTokens < 0 {
			t.Fatal("negative usage")
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, name := range []string{"chat_response.json", "embeddings_response.json", "error_new.json", "error_old.json"} {
		f.Add(fixture(f, name))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseResponse(body, DefaultMaxDepth)
		if err != nil {
			return
		}
		if r.Usage.PromptTokens < 0 || r.Usage.CompletionTokens < 0 {
			t.Fatal("negative usage")
		}
		var s StreamState
		s.ObserveData(body)
	})
}

// FuzzReadTopMatchesGjson: the one-pass read (jsonscan.Members) gives what
// checking and then walking the object with gjson gives, error for error.
func FuzzReadTopMatchesGjson(f *testing.F) {
	for _, name := range []string{"chat_response.json", "embeddings_response.json", "error_new.json", "error_old.json"} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{"response":{"model":"m","usage":{"input_tokens":3,"output_tokens":4}},"model":"x","choices":[],"choices":[1]}`))
	f.Add([]byte(`{"object":"error","type":"BadRequestError","u\u0073age":{"prompt_tokens":1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var got Response
		choices, err := readTop(body, 16, &got)
		var want Response
		var wantErr error
		switch cerr := jsonscan.Check(body, 16); {
		case errors.Is(cerr, jsonscan.ErrTooDeep):
			wantErr = ErrTooDeep
		case cerr != nil:
			wantErr = ErrNotJSON
		case !gjson.ParseBytes(body).IsObject():
			wantErr = ErrNotObject
		}
		if err != wantErr {
			t.Fatalf("%q: readTop %v, want %v", body, err, wantErr)
		}
		if err != nil {
			return
		}
		var fields objectFields
		root := gjson.ParseBytes(body)
		root.ForEach(func(k, v gjson.Result) bool {
			fields.read(&want, k.Str, v.Raw, true)
			return true
		})
		fields.finish(&want)
		if got != want {
			t.Fatalf("%q: readTop %+v, gjson walk %+v", body, got, want)
		}
		if c := root.Get("choices"); c.Raw != choices.Raw {
			t.Fatalf("%q: choices %q, gjson %q", body, choices.Raw, c.Raw)
		}
	})
}
