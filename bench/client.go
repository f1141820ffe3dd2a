package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// Output is what happened to one request, vllm bench's RequestFuncOutput
// (vllm/benchmarks/lib/endpoint_request_func.py). Times are seconds.
type Output struct {
	Success bool
	Error   string
	// Status is the HTTP status (0 when no response arrived).
	Status int
	// PromptLen is usage.prompt_tokens when the server sent usage, else the
	// dataset's prompt length (as vllm bench does).
	PromptLen int
	// OutputTokens is usage.completion_tokens (0 when no usage arrived).
	OutputTokens int
	// TTFT is from sending to the first chunk carrying choices (its text may
	// be empty, as vllm bench counts it).
	TTFT float64
	// ITL are the gaps between successive chunks carrying choices.
	ITL []float64
	// Latency is from sending to the last chunk carrying choices (the usage
	// chunk and [DONE] do not count).
	Latency float64
	// StartTime is when the request was sent, in seconds from the start of
	// the benchmark; ClientQueueTime is how long it waited for a
	// --max-concurrency slot after it arrived (a conversation's turn
	// arrives once its previous turn finished).
	StartTime       float64
	ClientQueueTime float64
	GeneratedText   string
	// TextChunks counts chunks whose text was not empty (the output token
	// estimate when a server sends no usage).
	TextChunks int
	// Model is the response's "model" (the adapter that served it).
	Model string
}

// maxLine bounds one SSE line (a chunk of one token is ~200 bytes; usage
// chunks and error bodies are small): a broken server cannot make the
// client buffer without bound.
const maxLine = 4 << 20

// errBodyExcerpt bounds how much of an error response is kept.
const errBodyExcerpt = 512

// Client sends benchmark requests.
type Client struct {
	HTTP *http.Client
}

// requestTimeout bounds one request, as vllm bench's aiohttp session does
// (AIOHTTP_TIMEOUT, 6 hours): a server that never answers cannot hang the
// benchmark for ever.
const requestTimeout = 6 * time.Hour

// NewClient returns a client whose transport keeps up to conns idle
// connections per host (vllm bench's connector keeps max-concurrency).
func NewClient(conns int) *Client {
	return &Client{HTTP: &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConns:        max(conns, 100),
		MaxIdleConnsPerHost: max(conns, 100),
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
	}}}
}

// Do sends one streaming request and measures it. since is the benchmark's
// start, for StartTime.
func (c *Client) Do(ctx context.Context, url string, body []byte, header http.Header, promptLen int, since time.Time) Output {
	out := Output{PromptLen: promptLen}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		out.Error = err.Error()
		return out
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	st := time.Now()
	out.StartTime = st.Sub(since).Seconds()
	resp, err := c.HTTP.Do(req)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	defer resp.Body.Close()
	out.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		// vllm bench records the reason phrase; the start of the body
		// says more (the OpenAI error message).
		b, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyExcerpt))
		out.Error = strings.TrimSpace(resp.Status + ": " + string(b))
		return out
	}
	var (
		first  = true
		recent = st
		text   strings.Builder
		// streamErr is an error event in the stream; as in vllm bench it
		// fails the request only if no token came.
		streamErr string
	)
	onChunk := func(data []byte, at time.Time) {
		ev := gjson.ParseBytes(data)
		if m := ev.Get("model"); out.Model == "" && m.Type == gjson.String {
			out.Model = m.Str
		}
		if u := ev.Get("usage"); u.IsObject() {
			if v := u.Get("completion_tokens"); v.Exists() {
				out.OutputTokens = int(v.Int())
			}
			if v := u.Get("prompt_tokens"); v.Exists() {
				out.PromptLen = int(v.Int())
			}
		}
		if e := ev.Get("error"); e.Exists() && streamErr == "" {
			streamErr = "stream error: " + truncate(e.Raw, errBodyExcerpt)
		}
		ch := ev.Get("choices.0")
		if !ch.Exists() {
			return
		}
		if first {
			first = false
			out.TTFT = at.Sub(st).Seconds()
		} else {
			out.ITL = append(out.ITL, at.Sub(recent).Seconds())
		}
		recent = at
		t := ch.Get("text")
		if !t.Exists() {
			t = ch.Get("delta.content")
		}
		if t.Str != "" {
			out.TextChunks++
			text.WriteString(t.Str)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		// A server that ignored "stream": one JSON body, whose arrival is
		// both the first and the last token.
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxLine))
		if err != nil {
			out.Error = err.Error()
			return out
		}
		onChunk(b, time.Now())
	} else if err := readSSE(resp.Body, onChunk); err != nil {
		out.Error = err.Error()
		out.GeneratedText = text.String()
		return out
	} else if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxLine)); err != nil {
		// vllm bench reads the stream to its end, past [DONE]; so does
		// this, and the connection goes back to the pool as aiohttp's
		// does, rather than being closed before the server's last bytes.
		out.Error = err.Error()
		out.GeneratedText = text.String()
		return out
	}
	out.GeneratedText = text.String()
	if first && streamErr != "" {
		out.Error = streamErr
		return out
	}
	if first {
		out.Error = "Never received a valid chunk to calculate TTFT. This response will be marked as failed!"
		return out
	}
	out.Success = true
	out.Latency = recent.Sub(st).Seconds()
	return out
}

// readSSE calls onData for each server-sent event's data (data lines of one
// event joined by "\n"), with the time the event was complete. Comments and
// other fields are skipped, "[DONE]" ends the stream.
func readSSE(r io.Reader, onData func(data []byte, at time.Time)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var data []byte
	have := false
	dispatch := func() bool {
		if !have {
			return true
		}
		have = false
		if bytes.Equal(data, []byte("[DONE]")) {
			return false
		}
		onData(data, time.Now())
		data = data[:0]
		return true
	}
	for {
		line, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				dispatch()
				return nil
			}
			return err
		}
		if len(line) == 0 {
			if !dispatch() {
				return nil
			}
			continue
		}
		v, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // a comment (":") or another field
		}
		v = bytes.TrimPrefix(v, []byte(" "))
		if have {
			data = append(data, '\n')
		}
		data = append(data, v...)
		have = true
	}
}

// readLine returns one line without its "\n" or "\r\n", at most maxLine bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > maxLine {
			return nil, fmt.Errorf("SSE line longer than %d bytes", maxLine)
		}
		if err == bufio.ErrBufferFull {
			buf = append(buf, frag...)
			continue
		}
		if err != nil {
			if len(buf)+len(frag) > 0 && errors.Is(err, io.EOF) {
				return bytes.TrimSuffix(append(buf, frag...), []byte("\r")), nil
			}
			return nil, err
		}
		line := frag[:len(frag)-1]
		if buf != nil {
			line = append(buf, line...)
		}
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
