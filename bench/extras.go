package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ExtrasHeader opens the block of what this tool reports besides vllm
// bench's table. It comes after the table's closing line, so a reader of
// vllm's table stops before it.
var ExtrasHeader = center(" meshllm extras ", 50, '=')

// ExtraInfo is what the extras block shows.
type ExtraInfo struct {
	// ServedModels counts successful responses by their "model"; shown
	// when more than one model answered or LoRA adapters were given.
	ServedModels Object
	ShowModels   bool
	Warmups      WarmupTotals
}

// WriteExtras prints the extras block in vllm's "{:<40} {:<10}" layout, or
// nothing when there is nothing to show.
func WriteExtras(w io.Writer, e ExtraInfo) {
	var rows [][2]string
	if e.ShowModels {
		var parts []string
		for _, f := range e.ServedModels {
			parts = append(parts, fmt.Sprintf("%s=%v", f.Key, f.Value))
		}
		rows = append(rows, [2]string{`Served models (response "model"):`, strings.Join(parts, " ")})
	}
	if wu := e.Warmups; wu.Sent > 0 {
		rows = append(rows,
			[2]string{"Warm-up requests (not in the totals):", strconv.Itoa(wu.Sent)},
			[2]string{"Warm-up requests failed:", strconv.Itoa(wu.Failed)},
			[2]string{"Warm-up input tokens:", strconv.Itoa(wu.InputTokens)},
			[2]string{"Warm-up generated tokens:", strconv.Itoa(wu.OutputTokens)})
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, ExtrasHeader)
	for _, r := range rows {
		fmt.Fprintf(w, "%-40s %-10s\n", r[0], r[1])
	}
	fmt.Fprintln(w, strings.Repeat("=", 50))
}
