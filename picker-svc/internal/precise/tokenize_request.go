package precise

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// An engine that serves neither render endpoint (vLLM before they were
// added) still serves POST /tokenize: TokenizeCompletionRequest {model,
// prompt (a string), add_special_tokens (default true)} or
// TokenizeChatRequest {model, messages, add_generation_prompt (default
// true), continue_final_message, add_special_tokens (default false),
// chat_template, chat_template_kwargs, tools, mm_processor_kwargs,
// media_io_kwargs}, answered by TokenizeResponse {count, max_model_len,
// tokens} (vllm/entrypoints/openai/protocol.py; later
// vllm/entrypoints/serve/tokenize/protocol.py). Its defaults are those of
// the completion and chat requests themselves, so the ids are the ones the
// engine will hash, given the same fields.

// tokenizeChatKeys are the fields a chat request shares with
// TokenizeChatRequest, copied as they are.
var tokenizeChatKeys = []string{"model", "messages", "add_generation_prompt", "continue_final_message",
	"add_special_tokens", "chat_template", "chat_template_kwargs", "tools", "mm_processor_kwargs", "media_io_kwargs"}

// tokenizeCompletionKeys: the prompt is handled apart (it may be a list).
var tokenizeCompletionKeys = []string{"model", "add_special_tokens"}

// tokenizeRequest turns an OpenAI completions or chat body into a /tokenize
// body. A prompt given as token ids needs no call: they come back as ids.
func tokenizeRequest(body []byte) (req []byte, ids []uint32, err error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, nil, fmt.Errorf("request body: %w", err)
	}
	out := map[string]json.RawMessage{}
	copyKeys := func(keys []string) {
		for _, k := range keys {
			if v, ok := fields[k]; ok {
				out[k] = v
			}
		}
	}
	if m, ok := fields["messages"]; ok && len(m) > 0 && string(m) != "null" {
		copyKeys(tokenizeChatKeys)
		b, err := json.Marshal(out)
		return b, nil, err
	}
	text, ids, err := onePrompt(fields["prompt"])
	if err != nil {
		return nil, nil, err
	}
	if ids != nil {
		return nil, ids, nil
	}
	copyKeys(tokenizeCompletionKeys)
	out["prompt"], _ = json.Marshal(text)
	b, err := json.Marshal(out)
	return b, nil, err
}

// onePrompt reads a completions prompt that holds one prompt: a string, a
// list of one string, a list of token ids, or a list of one such list.
func onePrompt(raw json.RawMessage) (string, []uint32, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, errors.New("request body has neither prompt nor messages")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", nil, fmt.Errorf("prompt: %w", err)
	}
	if len(list) == 0 {
		return "", nil, errors.New("prompt is an empty list")
	}
	var nums []float64
	if json.Unmarshal(raw, &nums) == nil {
		ids, err := toIDs(nums)
		return "", ids, err
	}
	if len(list) != 1 {
		return "", nil, fmt.Errorf("prompt holds %d prompts, want one", len(list))
	}
	return onePrompt(list[0])
}

func toIDs(nums []float64) ([]uint32, error) {
	ids := make([]uint32, len(nums))
	for i, n := range nums {
		if n < 0 || n > math.MaxUint32 || n != math.Trunc(n) {
			return nil, fmt.Errorf("prompt token id %v is not a token id", n)
		}
		ids[i] = uint32(n)
	}
	return ids, nil
}
