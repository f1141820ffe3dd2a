package llmapi

import "strings"

// IsLLMCall reports whether a request is an LLM API call the filter handles:
// POST, a path in paths (query ignored) and a JSON content type.
func IsLLMCall(method, path, contentType string, paths []string) bool {
	if method != "POST" {
		return false
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	found := false
	for _, p := range paths {
		if p == path {
			found = true
			break
		}
	}
	return found && IsJSON(contentType)
}

// IsJSON reports whether a Content-Type is application/json (parameters
// such as charset allowed, case-insensitive).
func IsJSON(contentType string) bool {
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// IsEventStream reports whether a Content-Type is text/event-stream.
func IsEventStream(contentType string) bool {
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}
