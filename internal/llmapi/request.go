// Package llmapi reads OpenAI-style request and response bodies: plain Go over
// []byte with gjson, no reflection, no host calls.
package llmapi

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/meshllm/meshllm/internal/jsonenc"
	"github.com/meshllm/meshllm/internal/jsonscan"
)

// Request is what the filter needs from an LLM request body, read the way
// vLLM reads it: Python's json (of duplicate keys the last one wins) and
// pydantic models in lax mode (see laxBool). Byte slices point into the
// body they were parsed from.
type Request struct {
	Model string
	// Stream is whether vLLM will stream the answer.
	Stream bool
	// IncludeUsage is whether vLLM will add a usage chunk to the stream:
	// stream_options.include_usage, which defaults to true when
	// stream_options is an object (vLLM's StreamOptions model).
	IncludeUsage bool
	// MaxTokens is max_completion_tokens, else max_tokens, else
	// max_output_tokens (Responses API); -1 when absent.
	MaxTokens int64
	// Prompt is the raw JSON text of "messages" (chat), "prompt"
	// (completions: a string, strings or token ids) or "input" (embeddings,
	// responses), kept for prefix hashing.
	Prompt []byte

	// Offsets (into the whole body) used to rewrite it without re-encoding,
	// always of the last occurrence of a key: the one vLLM reads.
	modelAt, modelLen   int // the "model" string, -1 if absent
	streamOptionsNullAt int // offset of "stream_options": null, -1 if not null
	includeUsageAt      int // offset of stream_options.include_usage's value, -1 if absent
	includeUsageLen     int
	closeAt             int // offset of the root object's closing brace
	// refused: a field the filter reads holds a value vLLM's validation
	// refuses (400), so the body must not be changed into one it accepts.
	refused bool
}

// Errors ParseRequest returns; callers count them and pass the body on.
var (
	ErrNotJSON     = errors.New("body is not valid JSON")
	ErrNotObject   = errors.New("body is not a JSON object")
	ErrModelMissed = errors.New(`body has no string "model"`)
	// ErrTooDeep: the body nests deeper than the configured limit. It is
	// not read at all.
	ErrTooDeep = errors.New("body nests JSON deeper than max_json_depth")
)

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// ParseRequest checks that body is one JSON object nested at most maxDepth
// deep and reads its top-level members in the same pass (jsonscan.Members,
// no recursion). Only the members read are parsed: the prompt, most of a
// request's bytes, is kept as raw text and never scanned a second time.
//
// A leading UTF-8 byte-order mark is skipped, as Python's json.loads does
// for bytes. Bodies in UTF-16 or UTF-32 (which Python would also decode)
// are read as not JSON: they pass on unrouted and their usage, if any, is
// counted as missing.
func ParseRequest(body []byte, maxDepth int) (Request, error) {
	empty := Request{MaxTokens: -1, modelAt: -1, includeUsageAt: -1, streamOptionsNullAt: -1}
	base := 0
	if bytes.HasPrefix(body, utf8BOM) {
		base = len(utf8BOM)
	}
	b := body[base:]
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	r := empty
	f := requestFields{maxTokens: -1, maxCompletion: -1, maxOutput: -1}
	err := jsonscan.Members(b, maxDepth, func(key, value []byte) {
		k := unsafeString(key[1 : len(key)-1])
		if bytes.IndexByte(key, '\\') >= 0 {
			k = gjson.Parse(string(key)).Str // an escaped key, as Python reads it
		}
		// value is b[at:at+len(value)]: its offset in the body is what
		// the rewrites splice at.
		f.read(&r, body, k, value, base+cap(b)-cap(value))
	})
	switch {
	case errors.Is(err, jsonscan.ErrTooDeep):
		return empty, ErrTooDeep
	case err != nil:
		return empty, ErrNotJSON
	case b[firstNonSpace(b)] != '{': // valid JSON: not all space
		return empty, ErrNotObject
	}
	f.finish(&r)
	r.closeAt = base + lastNonSpace(b)
	if r.Model == "" {
		return r, ErrModelMissed
	}
	return r, nil
}

// requestFields is what reading a request's members has seen so far; of
// keys that repeat, the last one wins, as in Python's json.
type requestFields struct {
	maxTokens, maxCompletion, maxOutput int64
	messages, prompt, input             []byte
	streamRefused, optionsRefused       bool
}

// read takes one top-level member: its key (unescaped), its value's raw
// bytes and their offset in body.
func (f *requestFields) read(r *Request, body []byte, key string, value []byte, at int) {
	raw := unsafeString(value)
	switch key {
	case "model":
		r.Model, r.modelAt, r.modelLen = "", -1, 0
		if v := gjson.Parse(raw); v.Type == gjson.String {
			r.Model = strings.Clone(v.Str) // v.Str may alias body
			r.modelAt, r.modelLen = at, len(value)
		}
	case "stream":
		var ok bool
		r.Stream, ok = laxBool(gjson.Parse(raw))
		f.streamRefused = !ok
	case "stream_options":
		r.IncludeUsage, r.includeUsageAt, r.includeUsageLen, r.streamOptionsNullAt = false, -1, 0, -1
		f.optionsRefused = false
		switch v := gjson.Parse(raw); {
		case v.IsObject():
			r.IncludeUsage = true // vLLM's default for include_usage
			v.ForEach(func(k, iu gjson.Result) bool {
				if k.Str == "include_usage" {
					var ok bool
					r.IncludeUsage, ok = laxBool(iu)
					f.optionsRefused = !ok // the last include_usage is the one read
					r.includeUsageAt, r.includeUsageLen = at+iu.Index, len(iu.Raw)
				}
				return true
			})
		case v.Type == gjson.Null:
			r.streamOptionsNullAt = at
		default: // vLLM refuses the request (400)
			f.optionsRefused = true
		}
	case "max_tokens":
		f.maxTokens = laxInt(gjson.Parse(raw))
	case "max_completion_tokens":
		f.maxCompletion = laxInt(gjson.Parse(raw))
	case "max_output_tokens":
		f.maxOutput = laxInt(gjson.Parse(raw))
	case "messages":
		f.messages = body[at : at+len(value)]
	case "prompt":
		f.prompt = body[at : at+len(value)]
	case "input":
		f.input = body[at : at+len(value)]
	}
}

// finish sets what depends on several members.
func (f *requestFields) finish(r *Request) {
	switch {
	case f.maxCompletion >= 0:
		r.MaxTokens = f.maxCompletion
	case f.maxTokens >= 0:
		r.MaxTokens = f.maxTokens
	case f.maxOutput >= 0:
		r.MaxTokens = f.maxOutput
	}
	switch {
	case f.messages != nil:
		r.Prompt = f.messages
	case f.prompt != nil:
		r.Prompt = f.prompt
	default:
		r.Prompt = f.input
	}
	r.refused = f.streamRefused || f.optionsRefused
}

// laxBool reads v as a pydantic bool field in lax mode does (pydantic-core
// str_as_bool, int_as_bool, float_as_bool): true/false; the numbers 0 and 1
// (1.0 too); the strings 0/1, f/t, n/y, no/yes, off/on, false/true in any
// ASCII case; null is None, which vLLM treats as false. ok is false for
// anything else, which vLLM refuses with a 400.
func laxBool(v gjson.Result) (val, ok bool) {
	switch v.Type {
	case gjson.True:
		return true, true
	case gjson.False, gjson.Null:
		return false, true
	case gjson.Number:
		switch v.Num {
		case 0:
			return false, true
		case 1:
			return true, true
		}
	case gjson.String:
		switch strings.ToLower(v.Str) {
		case "0", "f", "n", "no", "off", "false":
			if isASCII(v.Str) {
				return false, true
			}
		case "1", "t", "y", "on", "yes", "true":
			if isASCII(v.Str) {
				return true, true
			}
		}
	}
	return false, false
}

// isASCII guards laxBool: strings.ToLower folds a few non-ASCII letters
// (the Kelvin sign to "k") that pydantic's ASCII-only comparison does not.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// laxInt reads a token limit as pydantic's lax int does: an integer, a
// float with no fraction, or a string of digits. -1 for anything else
// (absent, negative, or refused by vLLM).
func laxInt(v gjson.Result) int64 {
	switch v.Type {
	case gjson.Number:
		if v.Num >= 0 && v.Num <= 1<<53 && v.Num == float64(int64(v.Num)) {
			return int64(v.Num)
		}
	case gjson.String:
		n, err := strconv.ParseInt(v.Str, 10, 64)
		if err == nil && n >= 0 && v.Str[0] != '+' {
			return n
		}
	}
	return -1
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
	return r.Stream && !r.IncludeUsage && !r.refused
}

// InjectIncludeUsage returns body with stream_options.include_usage set to
// true, spliced at the offsets ParseRequest recorded (no re-encoding). It
// returns body unchanged and false if nothing needs changing or r was not
// parsed from body. ParseRequest has validated body: the result is valid
// JSON that vLLM reads as asking for usage. On success r describes the new
// body (its offsets follow the splice), so RewriteModel can use it.
func (r *Request) InjectIncludeUsage(body []byte) ([]byte, bool) {
	if !r.NeedsUsageInjection() || r.closeAt <= 0 || r.closeAt >= len(body) || body[r.closeAt] != '}' {
		return body, false
	}
	var at, del int
	var ins string
	switch {
	case r.includeUsageAt >= 0: // "include_usage": false (or null, 0, "no", ...)
		at, del, ins = r.includeUsageAt, r.includeUsageLen, "true"
	case r.streamOptionsNullAt >= 0: // "stream_options": null
		at, del, ins = r.streamOptionsNullAt, len("null"), `{"include_usage":true}`
	default: // the root holds "model", so it is never empty
		at, ins = r.closeAt, `,"stream_options":{"include_usage":true}`
	}
	out := splice(body, at, del, ins)
	shift := func(off *int) {
		if *off > at {
			*off += len(ins) - del
		}
	}
	shift(&r.modelAt)
	shift(&r.closeAt)
	if r.closeAt == at { // appended right before the closing brace
		r.closeAt += len(ins)
	}
	r.IncludeUsage, r.includeUsageAt, r.streamOptionsNullAt = true, -1, -1
	return out, true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func splice(b []byte, at, del int, ins string) []byte {
	out := make([]byte, 0, len(b)-del+len(ins))
	out = append(out, b[:at]...)
	out = append(out, ins...)
	return append(out, b[at+del:]...)
}

// RewriteModel returns body with its "model" string (the last one, which
// vLLM reads) replaced by model, spliced in place. It reports false if r
// has no string model or was not parsed from body.
func (r *Request) RewriteModel(body []byte, model string) ([]byte, bool) {
	if r.modelAt <= 0 || r.modelAt+r.modelLen > len(body) || body[r.modelAt] != '"' {
		return body, false
	}
	return splice(body, r.modelAt, r.modelLen, string(jsonenc.AppendString(nil, model))), true
}
