// Package llmapi reads OpenAI-style request and response bodies: plain Go over
// []byte with gjson, no reflection, no host calls.
package llmapi

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Request is what the filter needs from an LLM request body. Byte slices
// point into the body they were parsed from.
type Request struct {
	Model string
	// Stream is the request's "stream" flag.
	Stream bool
	// IncludeUsage is stream_options.include_usage as the client sent it.
	IncludeUsage bool
	// MaxTokens is max_completion_tokens, else max_tokens, else
	// max_output_tokens (Responses API); -1 when absent.
	MaxTokens int64
	// Prompt is the raw JSON text of "messages" (chat), "prompt"
	// (completions: a string, strings or token ids) or "input" (embeddings,
	// responses), kept for prefix hashing.
	Prompt []byte

	// Offsets used to rewrite the body without re-encoding it.
	streamOptionsAt     int // offset of the stream_options value, -1 if absent
	includeUsageAt      int // offset of stream_options.include_usage's value, -1 if absent
	includeUsageLen     int
	streamOptionsNullAt int // offset of "stream_options": null, -1 if not null
	closeAt             int // offset of the root object's closing brace
}

// Errors ParseRequest returns; callers count them and pass the body on.
var (
	ErrNotJSON     = errors.New("body is not valid JSON")
	ErrNotObject   = errors.New("body is not a JSON object")
	ErrModelMissed = errors.New(`body has no string "model"`)
)

// ParseRequest reads body in one pass over its top-level keys.
//
// It does not validate the whole body (that pass costs three times the
// parse): it checks the body is one object and reads what it needs. A body
// that is broken further in goes upstream as it came, to be refused there;
// InjectIncludeUsage validates before it changes anything.
func ParseRequest(body []byte) (Request, error) {
	r := Request{MaxTokens: -1, streamOptionsAt: -1, includeUsageAt: -1, streamOptionsNullAt: -1}
	first, last := firstNonSpace(body), lastNonSpace(body)
	if first < 0 {
		return r, ErrNotJSON
	}
	if body[first] != '{' || body[last] != '}' {
		if body[first] == '[' || body[first] == '"' || body[first] == 't' || body[first] == 'f' || body[first] == 'n' ||
			body[first] == '-' || (body[first] >= '0' && body[first] <= '9') {
			if gjson.ValidBytes(body) {
				return r, ErrNotObject
			}
		}
		return r, ErrNotJSON
	}
	root := gjson.Parse(unsafeString(body))
	var maxTokens, maxCompletion, maxOutput int64 = -1, -1, -1
	var typeErr error
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			if v.Type == gjson.String {
				r.Model = strings.Clone(v.Str) // v.Str may alias body
			}
		case "stream":
			r.Stream = v.Type == gjson.True
		case "stream_options":
			if v.IsObject() {
				r.streamOptionsAt = v.Index
				iu := v.Get("include_usage")
				if iu.Exists() {
					r.IncludeUsage = iu.Type == gjson.True
					r.includeUsageAt, r.includeUsageLen = iu.Index, len(iu.Raw)
				}
			} else if v.Type == gjson.Null {
				r.streamOptionsNullAt = v.Index
			} else {
				typeErr = fmt.Errorf("stream_options is %s, want an object", v.Raw)
			}
		case "max_tokens":
			maxTokens = intValue(v)
		case "max_completion_tokens":
			maxCompletion = intValue(v)
		case "max_output_tokens":
			maxOutput = intValue(v)
		case "messages", "prompt", "input":
			if r.Prompt == nil && v.Index > 0 && v.Index+len(v.Raw) <= len(body) {
				r.Prompt = body[v.Index : v.Index+len(v.Raw)]
			}
		}
		return true
	})
	switch {
	case maxCompletion >= 0:
		r.MaxTokens = maxCompletion
	case maxTokens >= 0:
		r.MaxTokens = maxTokens
	case maxOutput >= 0:
		r.MaxTokens = maxOutput
	}
	r.closeAt = last
	if r.Model == "" {
		return r, ErrModelMissed
	}
	return r, typeErr
}

func intValue(v gjson.Result) int64 {
	if v.Type != gjson.Number || v.Num < 0 || v.Num > 1<<53 {
		return -1
	}
	return int64(v.Num)
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		if !isSpace(c) {
			return i
		}
	}
	return -1
}

func lastNonSpace(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if !isSpace(b[i]) {
			return i
		}
	}
	return -1
}

// unsafeString views b as a string without copying; gjson only reads it.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// NeedsUsageInjection reports whether a streaming request lacks
// stream_options.include_usage, so the response would carry no usage.
func (r *Request) NeedsUsageInjection() bool {
	return r.Stream && !r.IncludeUsage
}

// InjectIncludeUsage returns body with stream_options.include_usage set to
// true, spliced at the offsets ParseRequest recorded (no re-encoding). It
// returns body unchanged and false if nothing needs changing or r was not
// parsed from body.
func (r *Request) InjectIncludeUsage(body []byte) ([]byte, bool) {
	if !r.NeedsUsageInjection() || r.closeAt <= 0 || r.closeAt >= len(body) || body[r.closeAt] != '}' {
		return body, false
	}
	// Never change a body that is not valid JSON: it goes upstream as sent.
	if !gjson.ValidBytes(body) {
		return body, false
	}
	switch {
	case r.includeUsageAt >= 0: // "include_usage": false (or null, 0, ...)
		return splice(body, r.includeUsageAt, r.includeUsageLen, "true"), true
	case r.streamOptionsAt >= 0: // "stream_options": {...} without include_usage
		at := r.streamOptionsAt + 1
		ins := `"include_usage":true,`
		if isEmptyObjectAfter(body, at) {
			ins = `"include_usage":true`
		}
		return splice(body, at, 0, ins), true
	case r.streamOptionsNullAt >= 0: // "stream_options": null
		return splice(body, r.streamOptionsNullAt, len("null"), `{"include_usage":true}`), true
	default: // the root holds "model", so it is never empty
		return splice(body, r.closeAt, 0, `,"stream_options":{"include_usage":true}`), true
	}
}

// isEmptyObjectAfter reports whether only whitespace stands between at and
// the next '}'.
func isEmptyObjectAfter(b []byte, at int) bool {
	for i := at; i < len(b); i++ {
		if b[i] == '}' {
			return true
		}
		if !isSpace(b[i]) {
			return false
		}
	}
	return false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func splice(b []byte, at, del int, ins string) []byte {
	out := make([]byte, 0, len(b)-del+len(ins))
	out = append(out, b[:at]...)
	out = append(out, ins...)
	return append(out, b[at+del:]...)
}

// RewriteModel returns body with the top-level "model" string replaced by
// model, spliced in place. It reports false if body has no string model.
func RewriteModel(body []byte, model string) ([]byte, bool) {
	v := gjson.GetBytes(body, "model")
	if v.Type != gjson.String || v.Index <= 0 {
		return body, false
	}
	return splice(body, v.Index, len(v.Raw), string(appendJSONString(nil, model))), true
}

const hexDigits = "0123456789abcdef"

func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
