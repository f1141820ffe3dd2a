package vllmsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// The tokenizer endpoints vLLM's OpenAI server serves, answering with the
// ids the engine hashes into prefix-cache blocks and reports in KV events.

// tokenizeRequest is vLLM's TokenizeCompletionRequest (prompt) or
// TokenizeChatRequest (messages).
type tokenizeRequest struct {
	Model                *string         `json:"model"`
	Prompt               *string         `json:"prompt"`
	Messages             json.RawMessage `json:"messages"`
	AddGenerationPrompt  *bool           `json:"add_generation_prompt"`
	ContinueFinalMessage *bool           `json:"continue_final_message"`
	ReturnTokenStrs      *bool           `json:"return_token_strs"`
}

// tokenizeResponse is vLLM's TokenizeResponse.
type tokenizeResponse struct {
	Count       int       `json:"count"`
	MaxModelLen int       `json:"max_model_len"`
	Tokens      []uint32  `json:"tokens"`
	TokenStrs   *[]string `json:"token_strs"`
}

// readJSON reads a request body into v, strictly typed; a clear 400 otherwise.
func readJSON(w http.ResponseWriter, r *http.Request, v any) *apiError {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return errBadRequest("could not read request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return errBadRequest("invalid request body: %v", err)
	}
	if dec.More() {
		return errBadRequest("invalid request body: trailing data after the JSON object")
	}
	return nil
}

func (s *Server) checkModel(model *string) *apiError {
	if model == nil {
		return nil
	}
	if _, ok := s.models[*model]; !ok {
		return &apiError{status: 404, message: fmt.Sprintf("The model `%s` does not exist.", *model), param: "model"}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// tokenizeHandler serves POST /tokenize.
func (s *Server) tokenizeHandler(w http.ResponseWriter, r *http.Request) {
	var req tokenizeRequest
	if err := readJSON(w, r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	if err := s.checkModel(req.Model); err != nil {
		s.writeError(w, err)
		return
	}
	var text []byte
	switch {
	case req.Messages != nil && req.Prompt != nil:
		s.writeError(w, errBadRequest("give either prompt or messages, not both"))
		return
	case req.Messages != nil:
		msgs, err := decodeMessages(req.Messages)
		if err != nil {
			s.writeError(w, err)
			return
		}
		wr := wireRequest{AddGenerationPrompt: req.AddGenerationPrompt, ContinueFinalMessage: req.ContinueFinalMessage}
		tmpl, err := wr.chatTemplate()
		if err != nil {
			s.writeError(w, err)
			return
		}
		text = renderChat(msgs, tmpl)
	case req.Prompt != nil:
		text = []byte(*req.Prompt)
	default:
		s.writeError(w, &apiError{status: 400, message: "prompt or messages is required", param: "prompt"})
		return
	}
	ids := tokenize(text)
	resp := tokenizeResponse{Count: len(ids), MaxModelLen: s.cfg.MaxModelLen, Tokens: ids}
	if req.ReturnTokenStrs != nil && *req.ReturnTokenStrs {
		strs := make([]string, len(ids))
		for i, id := range ids {
			strs[i] = tokenText(id)
		}
		resp.TokenStrs = &strs
	}
	writeJSON(w, resp)
}

// detokenizeHandler serves POST /detokenize: {"model", "tokens"} to
// {"prompt"}.
func (s *Server) detokenizeHandler(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model  *string `json:"model"`
		Tokens []int64 `json:"tokens"`
	}
	if err := readJSON(w, r, &req); err != nil {
		s.writeError(w, err)
		return
	}
	if err := s.checkModel(req.Model); err != nil {
		s.writeError(w, err)
		return
	}
	if req.Tokens == nil {
		s.writeError(w, &apiError{status: 400, message: "tokens is required", param: "tokens"})
		return
	}
	if err := checkIDs(req.Tokens); err != nil {
		err.param = "tokens"
		s.writeError(w, err)
		return
	}
	ids := make([]uint32, len(req.Tokens))
	for i, id := range req.Tokens {
		ids[i] = uint32(id)
	}
	writeJSON(w, map[string]string{"prompt": detokenize(ids)})
}

// generateRequest is vLLM's GenerateRequest, what the render endpoints
// answer: a request as the engine will see it, token ids included.
// sampling_params carries the fields the simulator reads, not vLLM's full set.
type generateRequest struct {
	RequestID        string          `json:"request_id"`
	TokenIDs         []uint32        `json:"token_ids"`
	Features         *struct{}       `json:"features"`
	SamplingParams   samplingParams  `json:"sampling_params"`
	Model            *string         `json:"model"`
	Stream           bool            `json:"stream"`
	StreamOptions    *streamOptions  `json:"stream_options"`
	CacheSalt        *string         `json:"cache_salt"`
	Priority         int             `json:"priority"`
	KVTransferParams json.RawMessage `json:"kv_transfer_params"`
}

type samplingParams struct {
	N         int  `json:"n"`
	MaxTokens int  `json:"max_tokens"`
	MinTokens int  `json:"min_tokens"`
	IgnoreEOS bool `json:"ignore_eos"`
}

// renderHandler serves POST /v1/completions/render (a list, one per prompt)
// and /v1/chat/completions/render (one object): the request validated as
// its generation endpoint would, rendered, and not run.
func (s *Server) renderHandler(w http.ResponseWriter, r *http.Request, chat bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		s.writeError(w, errBadRequest("could not read request body: %v", err))
		return
	}
	req, aerr := decodeRequest(body, chat, s.models, s.cfg.Model)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	var wire struct {
		Model         *string        `json:"model"`
		StreamOptions *streamOptions `json:"stream_options"`
		CacheSalt     *string        `json:"cache_salt"`
		Priority      int            `json:"priority"`
	}
	_ = json.Unmarshal(body, &wire) // decodeRequest has checked the body
	prefix := "cmpl-"
	if chat {
		prefix = "chatcmpl-"
	}
	out := make([]generateRequest, len(req.prompts))
	for i, p := range req.prompts {
		maxTok, aerr := s.maxTokens(req, p)
		if aerr != nil {
			s.writeError(w, aerr)
			return
		}
		out[i] = generateRequest{
			RequestID: fmt.Sprintf("%s%016x%016x", prefix, s.idBase, s.nextID.Add(1)),
			TokenIDs:  tokenize(p),
			SamplingParams: samplingParams{N: 1, MaxTokens: maxTok, MinTokens: req.minTokens,
				IgnoreEOS: req.ignoreEOS},
			Model: wire.Model, Stream: req.stream, CacheSalt: wire.CacheSalt, Priority: wire.Priority,
			KVTransferParams: json.RawMessage("null"),
		}
		if req.stream {
			out[i].StreamOptions = wire.StreamOptions
		}
	}
	if chat {
		writeJSON(w, out[0])
		return
	}
	writeJSON(w, out)
}
