package llmapi

import (
	"bytes"
	"errors"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/internal/jsonscan"
)

// DefaultMaxDepth is the nesting limit readers use when given none.
const DefaultMaxDepth = jsonscan.DefaultMaxDepth

// Usage is what a response says it cost. "Not reported" is not zero: the Has
// flags tell whether each count was present at all.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	HasPrompt        bool
	HasCompletion    bool
}

// Reported reports whether any count was present.
func (u Usage) Reported() bool { return u.HasPrompt || u.HasCompletion }

// UsageOf reads a usage object: prompt_tokens / completion_tokens (chat,
// completions, embeddings) or input_tokens / output_tokens (Responses API).
// Negative or non-integer counts are treated as not reported.
func UsageOf(v gjson.Result) Usage {
	var u Usage
	if !v.IsObject() {
		return u
	}
	v.ForEach(func(k, n gjson.Result) bool {
		switch k.Str {
		case "prompt_tokens", "input_tokens":
			u.PromptTokens, u.HasPrompt = count(n)
		case "completion_tokens", "output_tokens":
			u.CompletionTokens, u.HasCompletion = count(n)
		}
		return true
	})
	return u
}

func count(n gjson.Result) (int64, bool) {
	if n.Type != gjson.Number || n.Num < 0 || n.Num > 1<<53 || n.Num != float64(int64(n.Num)) {
		return 0, false
	}
	return int64(n.Num), true
}

// Response is what the filter reads from a complete JSON response body.
type Response struct {
	Usage Usage
	// Model is the response's "model": the model or adapter that served it.
	Model string
	// ErrorType is set when the body is an error, in either vLLM format:
	// {"error":{"type":...}} (>= 0.10.1) or {"object":"error","type":...}.
	ErrorType string
	IsError   bool
}

// ParseResponse reads a complete JSON response body nested at most maxDepth
// deep. It fails with ErrTooDeep, ErrNotJSON or ErrNotObject.
func ParseResponse(body []byte, maxDepth int) (Response, error) {
	var r Response
	root, err := parseObject(body, maxDepth)
	if err != nil {
		return r, err
	}
	readObject(root, &r, true)
	r.Model = strings.Clone(r.Model)
	r.ErrorType = strings.Clone(r.ErrorType)
	return r, nil
}

// parseObject checks b (one pass, no recursion) and parses it as an object.
func parseObject(b []byte, maxDepth int) (gjson.Result, error) {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	if err := jsonscan.Check(b, maxDepth); err != nil {
		if errors.Is(err, jsonscan.ErrTooDeep) {
			return gjson.Result{}, ErrTooDeep
		}
		return gjson.Result{}, ErrNotJSON
	}
	root := gjson.Parse(unsafeString(b))
	if !root.IsObject() {
		return root, ErrNotObject
	}
	return root, nil
}

// readObject fills r from one response object or stream chunk. It descends
// into "response" (the Responses API's envelope) once, never further: no
// read recurses in proportion to the input.
func readObject(root gjson.Result, r *Response, envelope bool) {
	var object string
	var errType string
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "usage":
			if u := UsageOf(v); u.Reported() {
				r.Usage = u
			}
		case "model":
			if v.Type == gjson.String {
				r.Model = v.Str
			}
		case "object":
			object = v.Str
		case "type":
			errType = v.Str
		case "error":
			if v.IsObject() {
				r.IsError = true
				r.ErrorType = v.Get("type").Str
				if r.ErrorType == "" {
					r.ErrorType = "error"
				}
			}
		case "response": // Responses API: usage and model sit in "response"
			if envelope && v.IsObject() {
				readObject(v, r, false)
			}
		}
		return true
	})
	if object == "error" {
		r.IsError = true
		r.ErrorType = errType
		if r.ErrorType == "" {
			r.ErrorType = "error"
		}
	}
}

// StreamState accumulates what a stream's events say.
type StreamState struct {
	Response
	// Done is set once "data: [DONE]" arrived.
	Done bool
	// Events counts data events (chunks), [DONE] excluded.
	Events int
	// BadEvents counts data events that were not JSON objects.
	BadEvents int
	// DeepEvents counts data events nested deeper than MaxDepth (not read).
	DeepEvents int
	// MaxDepth bounds the nesting of an event that is read.
	MaxDepth int
}

var doneMarker = []byte("[DONE]")

// ObserveData takes the data of one SSE event and reports whether the event
// is a usage-only chunk (choices: [] and a usage object), the chunk vLLM adds
// for stream_options.include_usage.
func (s *StreamState) ObserveData(data []byte) (usageOnly bool) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return false
	}
	if bytes.Equal(data, doneMarker) {
		s.Done = true
		return false
	}
	root, err := parseObject(data, s.MaxDepth)
	switch {
	case errors.Is(err, ErrTooDeep):
		s.DeepEvents++
		return false
	case err != nil:
		s.BadEvents++
		return false
	}
	s.Events++
	var chunk Response
	readObject(root, &chunk, true)
	if chunk.Usage.Reported() {
		s.Usage = chunk.Usage // the last report is the total
	}
	if chunk.Model != "" && chunk.Model != s.Model {
		s.Model = strings.Clone(chunk.Model) // chunk.Model aliases the event
	}
	if chunk.IsError {
		s.IsError, s.ErrorType = true, strings.Clone(chunk.ErrorType)
	}
	if !chunk.Usage.Reported() {
		return false
	}
	choices := root.Get("choices")
	return choices.IsArray() && len(choices.Raw) > 0 && isEmptyArray(choices.Raw)
}

func isEmptyArray(raw string) bool {
	for i := 1; i < len(raw)-1; i++ {
		if !isSpace(raw[i]) {
			return false
		}
	}
	return true
}
