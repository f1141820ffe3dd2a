package vllmsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// apiError is an OpenAI-style error as vLLM returns it.
type apiError struct {
	status  int
	message string
	param   string // "" renders as null
}

func (e *apiError) Error() string { return e.message }

func errBadRequest(format string, a ...any) *apiError {
	return &apiError{status: 400, message: fmt.Sprintf(format, a...)}
}

// errorType is vLLM's type for an HTTP status.
func errorType(status int) string {
	switch status {
	case 400:
		return "BadRequestError"
	case 404:
		return "NotFoundError"
	case 405:
		return "MethodNotAllowed"
	case 413:
		return "BadRequestError"
	}
	return "InternalServerError"
}

// body renders the error in vLLM >= 0.10.1's nested shape, or the older
// flat one.
func (e *apiError) body(legacy bool) []byte {
	msg, _ := json.Marshal(e.message)
	param := []byte("null")
	if e.param != "" {
		param, _ = json.Marshal(e.param)
	}
	fields := fmt.Sprintf(`"message":%s,"type":%q,"param":%s,"code":%d`, msg, errorType(e.status), param, e.status)
	if legacy {
		return []byte(`{"object":"error",` + fields + "}")
	}
	return []byte(`{"error":{` + fields + "}}")
}

type streamOptions struct {
	IncludeUsage         *bool `json:"include_usage"`
	ContinuousUsageStats *bool `json:"continuous_usage_stats"`
}

// wireRequest is the subset of vLLM's CompletionRequest and
// ChatCompletionRequest the simulator reads. Other fields are accepted and
// ignored, as vLLM ignores unknown fields; typed fields reject wrong types.
type wireRequest struct {
	Model               *string         `json:"model"`
	Prompt              json.RawMessage `json:"prompt"`
	Messages            json.RawMessage `json:"messages"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	MinTokens           *int64          `json:"min_tokens"`
	N                   *int64          `json:"n"`
	Stream              *bool           `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	IgnoreEOS           *bool           `json:"ignore_eos"`
	Temperature         *float64        `json:"temperature"`
	// Chat template options (chat completions and /tokenize).
	AddGenerationPrompt  *bool    `json:"add_generation_prompt"`
	ContinueFinalMessage *bool    `json:"continue_final_message"`
	TopP                 *float64 `json:"top_p"`
}

// request is a decoded, validated generation request.
type request struct {
	chat            bool
	model           string // as asked: the base model or an adapter
	adapter         int    // -1 for the base model
	prompts         [][]byte
	maxTokens       int // 0: not given
	minTokens       int
	stream          bool
	includeUsage    bool
	continuousUsage bool
	ignoreEOS       bool
}

// decodeRequest parses a /v1/completions (chat=false) or
// /v1/chat/completions body. models maps served names to adapter indexes
// (-1 for the base model); defaultModel is used when "model" is absent.
func decodeRequest(body []byte, chat bool, models map[string]int, defaultModel string) (*request, *apiError) {
	var w wireRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return nil, errBadRequest("invalid request body: %v", err)
	}
	if dec.More() {
		return nil, errBadRequest("invalid request body: trailing data after the JSON object")
	}
	r := &request{chat: chat, model: defaultModel}
	if w.Model != nil {
		r.model = *w.Model
	}
	idx, ok := models[r.model]
	if !ok {
		return nil, &apiError{status: 404, message: fmt.Sprintf("The model `%s` does not exist.", r.model), param: "model"}
	}
	r.adapter = idx

	if chat {
		if w.Prompt != nil && !isNull(w.Prompt) {
			return nil, errBadRequest("chat completions take messages, not prompt")
		}
		msgs, err := decodeMessages(w.Messages)
		if err != nil {
			return nil, err
		}
		tmpl, err := w.chatTemplate()
		if err != nil {
			return nil, err
		}
		r.prompts = [][]byte{renderChat(msgs, tmpl)}
	} else {
		if w.Messages != nil && !isNull(w.Messages) {
			return nil, errBadRequest("completions take prompt, not messages")
		}
		p, err := decodePrompt(w.Prompt)
		if err != nil {
			return nil, err
		}
		r.prompts = p
	}

	mt := w.MaxTokens
	if chat && w.MaxCompletionTokens != nil {
		mt = w.MaxCompletionTokens // preferred over the deprecated max_tokens
	}
	if mt != nil {
		if *mt < 1 {
			return nil, &apiError{status: 400, message: fmt.Sprintf("max_tokens must be at least 1, got %d.", *mt), param: "max_tokens"}
		}
		r.maxTokens = int(min(*mt, 1<<30))
	}
	if w.MinTokens != nil {
		if *w.MinTokens < 0 {
			return nil, &apiError{status: 400, message: fmt.Sprintf("min_tokens must be greater than or equal to 0, got %d.", *w.MinTokens), param: "min_tokens"}
		}
		r.minTokens = int(min(*w.MinTokens, 1<<30))
		if r.maxTokens > 0 && r.minTokens > r.maxTokens {
			return nil, &apiError{status: 400, message: fmt.Sprintf("min_tokens must be less than or equal to max_tokens=%d, got %d.", r.maxTokens, r.minTokens), param: "min_tokens"}
		}
	}
	if w.N != nil && *w.N != 1 {
		return nil, &apiError{status: 400, message: fmt.Sprintf("n=%d is not supported by vllm-sim (only n=1)", *w.N), param: "n"}
	}
	if w.Temperature != nil && *w.Temperature < 0 {
		return nil, &apiError{status: 400, message: fmt.Sprintf("temperature must be non-negative, got %v.", *w.Temperature), param: "temperature"}
	}
	if w.Stream != nil {
		r.stream = *w.Stream
	}
	if w.StreamOptions != nil {
		if !r.stream {
			return nil, &apiError{status: 400, message: "Stream options can only be defined when `stream=True`.", param: "stream_options"}
		}
		r.includeUsage = w.StreamOptions.IncludeUsage != nil && *w.StreamOptions.IncludeUsage
		r.continuousUsage = w.StreamOptions.ContinuousUsageStats != nil && *w.StreamOptions.ContinuousUsageStats
	}
	if w.IgnoreEOS != nil {
		r.ignoreEOS = *w.IgnoreEOS
	}
	return r, nil
}

// chatTemplate reads the template options, rejecting the pair vLLM rejects.
func (w *wireRequest) chatTemplate() (chatTemplate, *apiError) {
	t := defaultChatTemplate
	if w.AddGenerationPrompt != nil {
		t.addGenerationPrompt = *w.AddGenerationPrompt
	}
	if w.ContinueFinalMessage != nil {
		t.continueFinalMessage = *w.ContinueFinalMessage
	}
	if t.addGenerationPrompt && t.continueFinalMessage {
		return t, errBadRequest("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
	}
	return t, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// decodePrompt accepts vLLM's prompt forms: a string, a list of strings, a
// list of token ids, or a list of token-id lists. Each becomes bytes.
func decodePrompt(raw json.RawMessage) ([][]byte, *apiError) {
	if raw == nil || isNull(raw) {
		return nil, &apiError{status: 400, message: "prompt is required", param: "prompt"}
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return [][]byte{[]byte(s)}, nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil {
		if len(ids) == 0 {
			return nil, &apiError{status: 400, message: "prompt cannot be empty", param: "prompt"}
		}
		if err := checkIDs(ids); err != nil {
			return nil, err
		}
		return [][]byte{idsToBytes(ids)}, nil
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil {
		if len(strs) == 0 {
			return nil, &apiError{status: 400, message: "prompt cannot be empty", param: "prompt"}
		}
		out := make([][]byte, len(strs))
		for i, s := range strs {
			out[i] = []byte(s)
		}
		return out, nil
	}
	var lists [][]int64
	if json.Unmarshal(raw, &lists) == nil {
		if len(lists) == 0 {
			return nil, &apiError{status: 400, message: "prompt cannot be empty", param: "prompt"}
		}
		out := make([][]byte, len(lists))
		for i, l := range lists {
			if len(l) == 0 {
				return nil, &apiError{status: 400, message: "prompt cannot be empty", param: "prompt"}
			}
			if err := checkIDs(l); err != nil {
				return nil, err
			}
			out[i] = idsToBytes(l)
		}
		return out, nil
	}
	return nil, &apiError{status: 400, message: "prompt must be a string, a list of strings, a list of token ids or a list of token-id lists", param: "prompt"}
}

func checkIDs(ids []int64) *apiError {
	for _, id := range ids {
		if id < 0 || id > maxTokenID {
			return &apiError{status: 400, message: "Token id " + strconv.FormatInt(id, 10) + " is out of vocabulary", param: "prompt"}
		}
	}
	return nil
}

// decodeMessages reads chat messages; content is a string, null, or a list
// of parts of which only text parts are supported (the simulated model is
// text-only, as a base LLM served by vLLM is).
func decodeMessages(raw json.RawMessage) ([]chatMessage, *apiError) {
	if raw == nil || isNull(raw) {
		return nil, &apiError{status: 400, message: "messages is required", param: "messages"}
	}
	var wire []struct {
		Role    *string         `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(raw, &wire); err != nil {
		return nil, &apiError{status: 400, message: "messages must be a list of message objects: " + err.Error(), param: "messages"}
	}
	if len(wire) == 0 {
		return nil, &apiError{status: 400, message: "messages cannot be empty", param: "messages"}
	}
	out := make([]chatMessage, len(wire))
	for i, m := range wire {
		if m.Role == nil || *m.Role == "" {
			return nil, &apiError{status: 400, message: fmt.Sprintf("messages[%d].role is required", i), param: "messages"}
		}
		out[i].Role = *m.Role
		if m.Content == nil || isNull(m.Content) {
			continue
		}
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			out[i].Content = s
			continue
		}
		var parts []struct {
			Type *string `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(m.Content, &parts); err != nil {
			return nil, &apiError{status: 400, message: fmt.Sprintf("messages[%d].content must be a string or a list of parts", i), param: "messages"}
		}
		var sb strings.Builder
		for j, p := range parts {
			if p.Type == nil || *p.Type != "text" || p.Text == nil {
				return nil, &apiError{status: 400, message: fmt.Sprintf("messages[%d].content[%d]: only text parts are supported", i, j), param: "messages"}
			}
			if j > 0 {
				sb.WriteByte('\n')
			}
			sb.WriteString(*p.Text)
		}
		out[i].Content = sb.String()
	}
	return out, nil
}
