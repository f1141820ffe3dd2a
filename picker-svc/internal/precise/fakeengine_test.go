package precise

import (
	"encoding/json"
	"net/http"
	"strings"
)

// fakeEngine answers vLLM's render endpoints and /tokenize for one model
// with a toy tokenizer (one id per byte) and a toy chat template, the same
// behind all three, which is what a real engine guarantees and what the
// /tokenize fallback relies on. An unknown model is a 404, as in vLLM.
type fakeEngine struct{ model string }

func (e fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string          `json:"model"`
		Prompt   json.RawMessage `json:"prompt"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
		AddGenerationPrompt  *bool `json:"add_generation_prompt"`
		ContinueFinalMessage bool  `json:"continue_final_message"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, `{"error":"bad json"}`, http.StatusBadRequest)
		return
	}
	if req.Model != e.model {
		http.Error(w, `{"error":"model not found"}`, http.StatusNotFound)
		return
	}
	var text string
	switch {
	case req.Messages != nil:
		var b strings.Builder
		for _, m := range req.Messages {
			b.WriteString("<|" + m.Role + "|>" + m.Content)
		}
		if !req.ContinueFinalMessage && (req.AddGenerationPrompt == nil || *req.AddGenerationPrompt) {
			b.WriteString("<|assistant|>")
		}
		text = b.String()
	case json.Unmarshal(req.Prompt, &text) == nil:
	default:
		var list []string
		if json.Unmarshal(req.Prompt, &list) != nil || len(list) != 1 {
			http.Error(w, `{"error":"one prompt"}`, http.StatusBadRequest)
			return
		}
		text = list[0]
	}
	ids := make([]uint32, len(text))
	for i := range len(text) {
		ids[i] = uint32(text[i])
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/completions/render":
		_ = json.NewEncoder(w).Encode([]map[string]any{{"token_ids": ids}})
	case "/v1/chat/completions/render":
		_ = json.NewEncoder(w).Encode(map[string]any{"token_ids": ids})
	case "/tokenize":
		_ = json.NewEncoder(w).Encode(map[string]any{"count": len(ids), "max_model_len": 16384, "tokens": ids})
	default:
		http.NotFound(w, r)
	}
}
