package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// resultFilename is vllm bench's compute_result_filename.
func (o *Options) resultFilename(modelID, date string) string {
	name := o.ResultFilename
	if name == "" {
		label := o.Label
		if label == "" {
			label = o.Backend
		}
		conc := ""
		if o.MaxConcurrency > 0 {
			conc = fmt.Sprintf("-concurrency%d", o.MaxConcurrency)
		}
		base := modelID[strings.LastIndexByte(modelID, '/')+1:]
		name = fmt.Sprintf("%s-%sqps%s-%s-%s.json", label, pyFloat(o.RequestRate), conc, base, date)
	}
	if o.ResultDir != "" {
		name = filepath.Join(o.ResultDir, name)
	}
	return name
}

// saveResult writes the result as vllm bench's main_async does: the file
// replaced, or with --append-result the object appended, after a newline
// when the file is not empty. It returns the file's name.
func saveResult(o *Options, modelID, date string, result Object) (string, error) {
	b, err := json.Marshal(result)
	if err != nil {
		return "", err
	}
	name := o.resultFilename(modelID, date)
	if o.ResultDir != "" {
		if err := os.MkdirAll(o.ResultDir, 0o755); err != nil {
			return "", err
		}
	}
	if !o.AppendResult {
		return name, os.WriteFile(name, b, 0o644)
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		b = append([]byte("\n"), b...)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return "", err
	}
	return name, f.Close()
}
